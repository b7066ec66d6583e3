/* tensorboard: scalars in TensorBoard's event-file format, without TensorFlow.
 *
 * RUN_DIR/events.out.tfevents.<seconds>.<host>.<pid>: TFRecords, each
 *   uint64 length | uint32 masked CRC-32C of the length | data | uint32 masked CRC-32C of data
 * around one Event protobuf: wall_time (double, field 1), step (int64, field 2), and either
 * file_version "brain.Event:2" (field 3, the first record) or a Summary (field 5) holding one
 * Value {tag (string, field 1), simple_value (float, field 2)}.  A resumed run appends to the
 * newest event file of RUN_DIR (like metrics.jsonl); a fresh run removes the old ones. */
#ifndef HARNESS_TENSORBOARD_H
#define HARNESS_TENSORBOARD_H

#include <stddef.h>
#include <stdint.h>

typedef struct tb_writer tb_writer;

/* 0, or -1 with err naming the file. */
int tb_open(tb_writer **out, const char *run_dir, int append, char *err, size_t errlen);
/* One scalar at step (write errors are counted, not fatal: training goes on). */
void tb_scalar(tb_writer *w, int64_t step, const char *tag, double value);
/* Flushes what was written (at log intervals). */
void tb_flush(tb_writer *w);
void tb_close(tb_writer *w);

/* CRC-32C (Castagnoli) of data, and TFRecord's masked form of it. */
uint32_t tb_crc32c(const void *data, size_t n);
uint32_t tb_masked_crc(const void *data, size_t n);

#endif
