"""Floor for writing a database durably: 4 MiB pwrites of random bytes, writeback started
after each (sync_file_range, the same trick ls-restore uses), one fsync at the end.
Usage: floor_write.py PATH BYTES  -> prints seconds."""
import ctypes
import os
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
SYNC_FILE_RANGE_WRITE = 2

path, total = sys.argv[1], int(sys.argv[2])
buf = os.urandom(4 << 20)
start = time.time()
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
off = 0
while off < total:
    n = min(len(buf), total - off)
    os.pwrite(fd, buf[:n], off)
    libc.sync_file_range(fd, off, n, SYNC_FILE_RANGE_WRITE)
    off += n
os.fsync(fd)
os.close(fd)
print("%.3f" % (time.time() - start))
