//! restore: placeholder until its issue lands.
