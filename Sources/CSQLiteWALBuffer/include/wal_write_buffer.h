#ifndef SWITCHBOARD_WAL_WRITE_BUFFER_H
#define SWITCHBOARD_WAL_WRITE_BUFFER_H

/// Registers the "switchboard-wal" SQLite VFS and makes it the default: the system's default
/// VFS, except that writes to a write-ahead log are gathered and written out together at the
/// end of each transaction (see wal_write_buffer.c). Safe to call more than once and from any
/// thread; returns an SQLite result code.
int switchboard_wal_buffer_install(void);

struct sqlite3;

/// How many gathered runs the connection's open write-ahead log has written out (one per commit,
/// usually), or -1 when that log is not open through this VFS. For tests and diagnostics.
long long switchboard_wal_buffer_write_outs(struct sqlite3 *db);

#endif
