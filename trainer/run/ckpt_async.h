/* ckpt_async: checkpoints written in the background (checkpoint.async, the default).
 *
 * At a periodic checkpoint step every rank settles its parameters and rank 0 copies what the
 * file holds into a host snapshot that is allocated once and reused from save to save
 * (kern_alloc_host: pinned on CUDA) - with zero_stage 1 the ranks gather the optimizer state
 * shards into it, one tensor at a time, as the synchronous write does.  Parameters and
 * optimizer state go through kern_download: on GPUs a device-to-host copy on a stream of its
 * own that the step loop does not wait for - the next optimizer update waits for it on the
 * device (kern_download_fence, step.c), the writer thread on the host (kern_download_wait,
 * its one backend call).  So the step loop waits only for queueing the copy (and for the
 * small buffers: batch norm's running statistics, which the next forward changes).  Then a
 * thread of rank 0 writes and publishes the file through
 * ckpt_write_host (temporary name, fsync, rename, directory fsync, keep-K: the guarantees of
 * checkpoint.h are unchanged) while training goes on.
 *
 * At most one save is in flight: the next checkpoint waits for it first (a "checkpoint wait"
 * span in the trace and wait_s in its metrics record).  Stops (signals, --stop-after) and the
 * end of training wait for it too, then write their own checkpoint synchronously.
 *
 * A failed background write: rank 0 notices it at the first step boundary after the thread
 * finished and sets a flag in the stop all-reduce that every rank makes at every step already
 * (train.c), so all ranks learn of it at the same step without an extra collective, stop, and
 * exit 1; the failed write removed its temporary file, so the previous checkpoint stays the
 * newest valid one.
 *
 * checkpoint.writers 0 (every rank writes, ckpt_parts.h): each rank copies its own slice (with
 * zero_stage 1 the shard it holds: no gather) and its own thread writes its part file.  The
 * stop all-reduce carries two more flags: "my part is not durable yet" and "my part failed".
 * When no part is pending, rank 0 tells its thread (waiting after its own part) to publish:
 * check the parts, write the file of virtual datasets, rename, keep-K.  A failed part stops
 * every rank at that step, like a failed write.  Waiting for the save in flight is then
 * collective (every rank's part, then rank 0's publication).
 *
 * HDF5 from two threads: Debian's libhdf5 is built thread-safe (one lock inside the library);
 * when a build is not (H5is_library_threadsafe), the writer holds data/'s module lock
 * (data_hdf5_lock) for the whole write, so the prefetch threads' reads wait for it instead of
 * racing it. */
#ifndef HARNESS_CKPT_ASYNC_H
#define HARNESS_CKPT_ASYNC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "checkpoint.h"

typedef struct {
    int on;                   /* checkpoint.async (the writer lives on rank 0 only, or on every
                               * rank with every_rank) */
    /* checkpoint.writers 0 with more than one rank: every rank writes its part (ckpt_parts.h),
     * rank 0 publishes; the saves' ids derive from nonce (rank 0's, broadcast at start) */
    int every_rank;
    uint64_t nonce;
    /* the snapshot, rank 0: params[n_params], buffers[n_buffers], state[s][n_params];
     * every_rank: each rank its slice params[hi - lo], state[s][hi - lo], rank 0 buffers too */
    float *params, *buffers, *state[2];
    int64_t bytes;            /* the snapshot's size (what each checkpoint file holds) */
    /* the save in flight */
    pthread_t thread;
    int running;              /* a thread was started and not yet joined */
    atomic_int finished;      /* the thread has returned (the main thread may join at once) */
    ckpt_state s;
    double t_start;           /* when the thread started (metrics_now) */
    double copy_s, wait_s;    /* what the step loop waited for: the snapshot, the previous save */
    double drain_s;           /* the last run_checkpoint_drain's wait (0: nothing in flight) */
    /* the Slurm recipes' --signal lead time (HARNESS_SIGNAL_LEAD_S, seconds; 0: not told),
     * checked against a step plus what a stop's saves take; warned once */
    double signal_lead_s, step_s, last_poll_t;
    int lead_warned;
    /* every_rank, rank 0's thread: its part is written (part_ok: without error), then it waits
     * for publish: 1 every part is durable (the step loop's all-reduce said so), -1 give up */
    atomic_int part_done, publish;
    int part_ok;
    /* the thread's result */
    int status;
    double write_s;
    char path[1200];
    char err[1024];
} ckpt_async;

#endif
