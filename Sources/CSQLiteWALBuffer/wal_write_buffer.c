// A thin SQLite VFS over the system default ("unix"), for one thing: fewer, larger writes to
// the write-ahead log.
//
// SQLite appends each frame of a commit to the WAL with two write calls, its 24-byte header and
// then the page, at an offset that is not page aligned. On the ingest writer that was about a
// quarter of its time: ten write calls and three page-cache folio updates per message. Here a
// WAL file's appends are gathered in memory and written out with one call when the commit's
// last frame (the one whose header carries the database size) is complete - still inside the
// xWrite of that frame, so before SQLite publishes the commit in the WAL index and before any
// fsync. Anything else that touches the file (a read, sync, truncate, size query, file
// control, memory map, close) or a write that does not continue the gathered run writes out
// what is gathered first, so the file always reads as SQLite wrote it. Every other file
// (database, journals, shared memory) is the default VFS's own, untouched.

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include "wal_write_buffer.h"

#define WAL_FRAME_HEADER 24
// Larger runs than this are written out as they grow (a transaction that spills its cache).
#define MAX_GATHERED (8 * 1024 * 1024)
// The most one underlying write call is given.
#define MAX_WRITE (124 * 1024)

typedef struct GatheringFile {
    sqlite3_file base;          // pMethods: gatheringMethods
    sqlite3_file *real;         // the default VFS's file, stored right after this struct
    unsigned char *buf;
    int len, cap;
    sqlite3_int64 start;        // file offset of buf[0]
    int commitPagePending;      // the header just gathered was a commit frame's
    long long writeOuts;        // gathered runs written out (switchboard_wal_buffer_write_outs)
} GatheringFile;

static sqlite3_vfs gatheringVFS;
static sqlite3_vfs *realVFS;
static sqlite3_io_methods gatheringMethods;

static size_t realFileOffset(void) {
    return (sizeof(GatheringFile) + 15) & ~(size_t)15;
}

static int writeOut(GatheringFile *g) {
    if (g->len == 0) return SQLITE_OK;
    int rc = SQLITE_OK;
    // In pieces: the unix VFS writes at most 128 KiB - 1 per call (and says SQLITE_FULL when asked
    // for more).
    for (int done = 0; done < g->len && rc == SQLITE_OK; done += MAX_WRITE) {
        int n = g->len - done < MAX_WRITE ? g->len - done : MAX_WRITE;
        rc = g->real->pMethods->xWrite(g->real, g->buf + done, n, g->start + done);
    }
    g->len = 0;
    g->writeOuts++;
    return rc;
}

static int gClose(sqlite3_file *f) {
    GatheringFile *g = (GatheringFile *)f;
    int rc = writeOut(g);
    int rc2 = g->real->pMethods->xClose(g->real);
    free(g->buf);
    g->buf = NULL;
    return rc != SQLITE_OK ? rc : rc2;
}

static int gRead(sqlite3_file *f, void *p, int amt, sqlite3_int64 off) {
    GatheringFile *g = (GatheringFile *)f;
    int rc = writeOut(g);
    if (rc != SQLITE_OK) return rc;
    return g->real->pMethods->xRead(g->real, p, amt, off);
}

static int gWrite(sqlite3_file *f, const void *p, int amt, sqlite3_int64 off) {
    GatheringFile *g = (GatheringFile *)f;
    int rc;
    // A frame is written as its 24-byte header, then its page. Bytes 4..7 of the header hold the
    // database size in pages after a commit, else zero: the page after a commit frame's header
    // ends the commit, and everything gathered goes out with it (whatever path it takes below).
    int endsCommit = 0;
    if (amt == WAL_FRAME_HEADER) {
        const unsigned char *h = p;
        g->commitPagePending = (h[4] | h[5] | h[6] | h[7]) != 0;
    } else {
        endsCommit = g->commitPagePending;
        g->commitPagePending = 0;
    }
    if (g->len > 0 && off != g->start + g->len) {
        if ((rc = writeOut(g)) != SQLITE_OK) return rc;
    }
    if (g->len + amt > g->cap) {
        if (g->len + amt > MAX_GATHERED) {
            if ((rc = writeOut(g)) != SQLITE_OK) return rc;
            if (amt > MAX_WRITE) return g->real->pMethods->xWrite(g->real, p, amt, off);
        }
        int want = g->cap ? g->cap : 256 * 1024;
        while (want < g->len + amt) want *= 2;
        unsigned char *grown = realloc(g->buf, (size_t)want);
        if (!grown) {
            // No memory to gather: write through, in order.
            if ((rc = writeOut(g)) != SQLITE_OK) return rc;
            return g->real->pMethods->xWrite(g->real, p, amt, off);
        }
        g->buf = grown;
        g->cap = want;
    }
    if (g->len == 0) g->start = off;
    memcpy(g->buf + g->len, p, (size_t)amt);
    g->len += amt;
    return endsCommit ? writeOut(g) : SQLITE_OK;
}

static int gTruncate(sqlite3_file *f, sqlite3_int64 size) {
    GatheringFile *g = (GatheringFile *)f;
    int rc = writeOut(g);
    if (rc != SQLITE_OK) return rc;
    return g->real->pMethods->xTruncate(g->real, size);
}

static int gSync(sqlite3_file *f, int flags) {
    GatheringFile *g = (GatheringFile *)f;
    int rc = writeOut(g);
    if (rc != SQLITE_OK) return rc;
    return g->real->pMethods->xSync(g->real, flags);
}

static int gFileSize(sqlite3_file *f, sqlite3_int64 *size) {
    GatheringFile *g = (GatheringFile *)f;
    int rc = writeOut(g);
    if (rc != SQLITE_OK) return rc;
    return g->real->pMethods->xFileSize(g->real, size);
}

static int gLock(sqlite3_file *f, int level) {
    GatheringFile *g = (GatheringFile *)f;
    return g->real->pMethods->xLock(g->real, level);
}

static int gUnlock(sqlite3_file *f, int level) {
    GatheringFile *g = (GatheringFile *)f;
    return g->real->pMethods->xUnlock(g->real, level);
}

static int gCheckReservedLock(sqlite3_file *f, int *out) {
    GatheringFile *g = (GatheringFile *)f;
    return g->real->pMethods->xCheckReservedLock(g->real, out);
}

static int gFileControl(sqlite3_file *f, int op, void *arg) {
    GatheringFile *g = (GatheringFile *)f;
    int rc = writeOut(g);
    if (rc != SQLITE_OK) return rc;
    return g->real->pMethods->xFileControl(g->real, op, arg);
}

static int gSectorSize(sqlite3_file *f) {
    GatheringFile *g = (GatheringFile *)f;
    return g->real->pMethods->xSectorSize(g->real);
}

static int gDeviceCharacteristics(sqlite3_file *f) {
    GatheringFile *g = (GatheringFile *)f;
    return g->real->pMethods->xDeviceCharacteristics(g->real);
}

static int gShmMap(sqlite3_file *f, int page, int size, int extend, void volatile **pp) {
    GatheringFile *g = (GatheringFile *)f;
    return g->real->pMethods->xShmMap(g->real, page, size, extend, pp);
}

static int gShmLock(sqlite3_file *f, int offset, int n, int flags) {
    GatheringFile *g = (GatheringFile *)f;
    return g->real->pMethods->xShmLock(g->real, offset, n, flags);
}

static void gShmBarrier(sqlite3_file *f) {
    GatheringFile *g = (GatheringFile *)f;
    g->real->pMethods->xShmBarrier(g->real);
}

static int gShmUnmap(sqlite3_file *f, int deleteFlag) {
    GatheringFile *g = (GatheringFile *)f;
    return g->real->pMethods->xShmUnmap(g->real, deleteFlag);
}

static int gFetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **pp) {
    GatheringFile *g = (GatheringFile *)f;
    int rc = writeOut(g);
    if (rc != SQLITE_OK) return rc;
    return g->real->pMethods->xFetch(g->real, off, amt, pp);
}

static int gUnfetch(sqlite3_file *f, sqlite3_int64 off, void *p) {
    GatheringFile *g = (GatheringFile *)f;
    return g->real->pMethods->xUnfetch(g->real, off, p);
}

static int vOpen(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags, int *outFlags) {
    (void)vfs;
    if (!(flags & SQLITE_OPEN_WAL)) {
        // Not a write-ahead log: the default VFS's file as it is (this VFS's szOsFile is larger).
        return realVFS->xOpen(realVFS, name, file, flags, outFlags);
    }
    GatheringFile *g = (GatheringFile *)file;
    memset(g, 0, sizeof(*g));
    g->real = (sqlite3_file *)((char *)file + realFileOffset());
    int rc = realVFS->xOpen(realVFS, name, g->real, flags, outFlags);
    if (rc != SQLITE_OK) {
        // SQLite calls xClose only when pMethods is set.
        if (g->real->pMethods) g->real->pMethods->xClose(g->real);
        g->base.pMethods = NULL;
        return rc;
    }
    if (g->real->pMethods->iVersion < 3) {
        // A file kind this wrapper does not know: the write-ahead log as the default VFS keeps it.
        g->real->pMethods->xClose(g->real);
        return realVFS->xOpen(realVFS, name, file, flags, outFlags);
    }
    g->base.pMethods = &gatheringMethods;
    return SQLITE_OK;
}

static int vDelete(sqlite3_vfs *v, const char *n, int s) { (void)v; return realVFS->xDelete(realVFS, n, s); }
static int vAccess(sqlite3_vfs *v, const char *n, int f, int *o) { (void)v; return realVFS->xAccess(realVFS, n, f, o); }
static int vFullPathname(sqlite3_vfs *v, const char *n, int m, char *o) { (void)v; return realVFS->xFullPathname(realVFS, n, m, o); }
static void *vDlOpen(sqlite3_vfs *v, const char *n) { (void)v; return realVFS->xDlOpen(realVFS, n); }
static void vDlError(sqlite3_vfs *v, int n, char *m) { (void)v; realVFS->xDlError(realVFS, n, m); }
static void (*vDlSym(sqlite3_vfs *v, void *h, const char *s))(void) { (void)v; return realVFS->xDlSym(realVFS, h, s); }
static void vDlClose(sqlite3_vfs *v, void *h) { (void)v; realVFS->xDlClose(realVFS, h); }
static int vRandomness(sqlite3_vfs *v, int n, char *o) { (void)v; return realVFS->xRandomness(realVFS, n, o); }
static int vSleep(sqlite3_vfs *v, int us) { (void)v; return realVFS->xSleep(realVFS, us); }
static int vCurrentTime(sqlite3_vfs *v, double *t) { (void)v; return realVFS->xCurrentTime(realVFS, t); }
static int vGetLastError(sqlite3_vfs *v, int n, char *m) { (void)v; return realVFS->xGetLastError ? realVFS->xGetLastError(realVFS, n, m) : 0; }
static int vCurrentTimeInt64(sqlite3_vfs *v, sqlite3_int64 *t) { (void)v; return realVFS->xCurrentTimeInt64(realVFS, t); }
static int vSetSystemCall(sqlite3_vfs *v, const char *n, sqlite3_syscall_ptr p) { (void)v; return realVFS->xSetSystemCall(realVFS, n, p); }
static sqlite3_syscall_ptr vGetSystemCall(sqlite3_vfs *v, const char *n) { (void)v; return realVFS->xGetSystemCall(realVFS, n); }
static const char *vNextSystemCall(sqlite3_vfs *v, const char *n) { (void)v; return realVFS->xNextSystemCall(realVFS, n); }

static pthread_once_t installOnce = PTHREAD_ONCE_INIT;
static int installResult = SQLITE_ERROR;

static void install(void) {
    if (sqlite3_initialize() != SQLITE_OK) return;
    realVFS = sqlite3_vfs_find(NULL);
    if (!realVFS) return;
    // Only over a VFS of the version this file knows (unix's is 3).
    if (realVFS->iVersion < 3) { installResult = SQLITE_MISUSE; return; }
    gatheringMethods = (sqlite3_io_methods){
        3, gClose, gRead, gWrite, gTruncate, gSync, gFileSize, gLock, gUnlock, gCheckReservedLock,
        gFileControl, gSectorSize, gDeviceCharacteristics, gShmMap, gShmLock, gShmBarrier, gShmUnmap,
        gFetch, gUnfetch,
    };
    gatheringVFS = (sqlite3_vfs){
        .iVersion = 3,
        .szOsFile = (int)(realFileOffset() + (size_t)realVFS->szOsFile),
        .mxPathname = realVFS->mxPathname,
        .zName = "switchboard-wal",
        .xOpen = vOpen, .xDelete = vDelete, .xAccess = vAccess, .xFullPathname = vFullPathname,
        .xDlOpen = vDlOpen, .xDlError = vDlError, .xDlSym = vDlSym, .xDlClose = vDlClose,
        .xRandomness = vRandomness, .xSleep = vSleep, .xCurrentTime = vCurrentTime,
        .xGetLastError = vGetLastError, .xCurrentTimeInt64 = vCurrentTimeInt64,
        .xSetSystemCall = vSetSystemCall, .xGetSystemCall = vGetSystemCall, .xNextSystemCall = vNextSystemCall,
    };
    installResult = sqlite3_vfs_register(&gatheringVFS, 1);
}

int switchboard_wal_buffer_install(void) {
    pthread_once(&installOnce, install);
    return installResult;
}

long long switchboard_wal_buffer_write_outs(struct sqlite3 *db) {
    sqlite3_file *wal = NULL;
    if (sqlite3_file_control(db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal) != SQLITE_OK || !wal) return -1;
    if (wal->pMethods != &gatheringMethods) return -1;
    return ((GatheringFile *)wal)->writeOuts;
}
