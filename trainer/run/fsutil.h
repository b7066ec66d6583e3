/* fsutil: small file-system helpers for the trainer. */
#ifndef HARNESS_FSUTIL_H
#define HARNESS_FSUTIL_H

/* mkdir -p PATH (mode 0755).  0, or -1 with errno set. */
int make_dirs(const char *path);

/* fsync(2) of a file (directory = 0) or of a directory (directory = 1: makes a rename or an
 * unlink inside it durable).  0, or -1 with errno set. */
int fsync_path(const char *path, int directory);

#endif
