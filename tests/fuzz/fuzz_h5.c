/* fuzz_h5: HDF5 identifier accounting (see fuzz_h5.h). */
#include "fuzz_h5.h"

#include <hdf5.h>

#include "fuzz_util.h"

static const H5I_type_t kinds[] = {H5I_FILE, H5I_GROUP, H5I_DATATYPE, H5I_DATASPACE,
                                   H5I_DATASET, H5I_ATTR, H5I_GENPROP_LST};
static const char *const names[] = {"file", "group", "datatype", "dataspace", "dataset",
                                    "attribute", "property list"};
#define NKINDS (sizeof kinds / sizeof kinds[0])
static hsize_t base[NKINDS];

void fuzz_h5_baseline(void) {
    /* Let HDF5 register its predefined types and default property lists first. */
    H5open();
    H5Tclose(H5Tcopy(H5T_C_S1));
    H5Sclose(H5Screate(H5S_SCALAR));
    H5Pclose(H5Pcreate(H5P_FILE_ACCESS));
    for (size_t i = 0; i < NKINDS; i++) H5Inmembers(kinds[i], &base[i]);
}

void fuzz_h5_check_closed(const char *after) {
    for (size_t i = 0; i < NKINDS; i++) {
        hsize_t n = 0;
        H5Inmembers(kinds[i], &n);
        FUZZ_CHECK(n <= base[i], "after %s: %llu %s identifier(s) left open", after,
                   (unsigned long long)(n - base[i]), names[i]);
    }
}
