/* HDF5 handle accounting for the fuzz harnesses that read HDF5 files: a reader that forgets
 * to close a file, group, dataset, attribute, datatype, dataspace or property list leaves an
 * identifier behind, which LeakSanitizer cannot see (HDF5 still references it). */
#ifndef HARNESS_FUZZ_H5_H
#define HARNESS_FUZZ_H5_H

/* Takes the baseline: call once, before the first input. */
void fuzz_h5_baseline(void);
/* After an input: every identifier the readers opened must be closed again (abort if not). */
void fuzz_h5_check_closed(const char *after);

#endif
