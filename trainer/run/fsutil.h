/* fsutil: small file-system helpers for the trainer. */
#ifndef HARNESS_FSUTIL_H
#define HARNESS_FSUTIL_H

/* mkdir -p PATH (mode 0755).  0, or -1 with errno set. */
int make_dirs(const char *path);

#endif
