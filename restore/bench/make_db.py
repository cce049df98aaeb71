"""Makes the restore benchmarks' database: SIZE_MIB MiB of incompressible rows, one 4000-byte
randomblob per 4096-byte page, checkpointed into the main file.
Usage: make_db.py PATH SIZE_MIB"""
import sqlite3
import sys

path, mib = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(path)
c.execute("pragma page_size=4096")
c.execute("pragma journal_mode=wal")
c.execute("create table t(id integer primary key, b blob)")
# 4000-byte random rows fill one 4096-byte page each, so pages do not compress.
n = mib * 1024 * 1024 // 4096
for i in range(0, n, 10000):
    c.execute("begin")
    c.executemany("insert into t(b) values(randomblob(4000))", [()] * min(10000, n - i))
    c.execute("commit")
c.execute("pragma wal_checkpoint(truncate)")
c.close()
