/* Preloaded by tests/sanitize.sh only: dlclose does nothing, so the plugins that Open MPI
 * dlopen()s (mca_*.so) and unloads again in MPI_Finalize stay mapped until exit.  Without it
 * LeakSanitizer, which runs at exit, sees their allocations as "<unknown module>" and neither
 * a stack nor a suppression can name them.  Not used by any build or by the trainer. */
int dlclose(void *handle);
int dlclose(void *handle) {
    (void)handle;
    return 0;
}
