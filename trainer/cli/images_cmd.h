/* images_cmd: `harness convert images` (image folders -> HDF5; data/convert_images.c). */
#ifndef HARNESS_IMAGES_CMD_H
#define HARNESS_IMAGES_CMD_H

extern const char *const usage_convert_images;

/* argv[1] = "convert", argv[2] = "images" */
int cmd_convert_images(int argc, char **argv);

#endif
