# Sourced by every test and benchmark script that starts mpirun (ctest sets the same through
# HARNESS_MPI_ENV in tests/CMakeLists.txt; a script run by hand gets them from here).
#   OMPI_ALLOW_RUN_AS_ROOT*   containers and CI run as root, which Open MPI refuses otherwise
#   rmaps_base_oversubscribe  more ranks than cores (a 2-core machine runs 4-rank tests)
#   btl_vader_single_copy_mechanism=none  containers often forbid the cross-process memory
#                             calls (CMA) Open MPI's shared-memory transport uses by default
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
