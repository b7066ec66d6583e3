/* image_decode: JPEG (libjpeg-turbo) and PNG (libpng's simplified API) files -> RGB8, and a
 * bilinear resize.  Used by convert_images.c. */
#include <errno.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>   /* after stdio.h and stddef.h: it uses FILE and size_t */
#include <png.h>

#include "data_internal.h"

/* libjpeg reports errors through error_exit, which must not return: jump back with the
 * library's message. */
typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} jpeg_error;

static void jpeg_fail(j_common_ptr cinfo) {
    jpeg_error *e = (jpeg_error *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->message);
    longjmp(e->jump, 1);
}

static void jpeg_quiet(j_common_ptr cinfo, int level) { (void)cinfo; (void)level; }

static int decode_jpeg(FILE *f, unsigned char **out, int *h, int *w, char *err, size_t errlen) {
    struct jpeg_decompress_struct cinfo;
    jpeg_error e;
    unsigned char *volatile pixels = NULL;
    cinfo.err = jpeg_std_error(&e.mgr);
    e.mgr.error_exit = jpeg_fail;
    e.mgr.emit_message = jpeg_quiet;   /* warnings (e.g. premature end) become errors below */
    if (setjmp(e.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        return data_errorf(err, errlen, "JPEG: %s", e.message);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_stdio_src(&cinfo, f);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.out_color_space = JCS_RGB;   /* grayscale and CMYK files come out as RGB too */
    jpeg_start_decompress(&cinfo);
    size_t row = (size_t)cinfo.output_width * 3;
    pixels = malloc(row * cinfo.output_height + 1);
    if (!pixels) {
        jpeg_destroy_decompress(&cinfo);
        return data_errorf(err, errlen, "out of memory");
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW r = pixels + row * cinfo.output_scanline;
        jpeg_read_scanlines(&cinfo, &r, 1);
    }
    if (e.mgr.num_warnings > 0) {   /* libjpeg pads a truncated file with grey: refuse it */
        (*cinfo.err->format_message)((j_common_ptr)&cinfo, e.message);
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        return data_errorf(err, errlen, "JPEG: %s", e.message);
    }
    jpeg_finish_decompress(&cinfo);
    *h = (int)cinfo.output_height;
    *w = (int)cinfo.output_width;
    jpeg_destroy_decompress(&cinfo);
    *out = pixels;
    return 0;
}

static int decode_png(const char *path, unsigned char **out, int *h, int *w, char *err,
                      size_t errlen) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path))
        return data_errorf(err, errlen, "PNG: %s", img.message);
    img.format = PNG_FORMAT_RGB;   /* gray expands; alpha is composited onto black */
    unsigned char *pixels = malloc(PNG_IMAGE_SIZE(img) + 1);
    if (!pixels) {
        png_image_free(&img);
        return data_errorf(err, errlen, "out of memory");
    }
    if (!png_image_finish_read(&img, NULL, pixels, 0, NULL)) {
        free(pixels);
        int rc = data_errorf(err, errlen, "PNG: %s", img.message);
        png_image_free(&img);
        return rc;
    }
    *h = (int)img.height;
    *w = (int)img.width;
    *out = pixels;
    return 0;
}

int data_image_decode(const char *path, unsigned char **rgb, int *h, int *w, char *err,
                      size_t errlen) {
    *rgb = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return data_errorf(err, errlen, "%s", strerror(errno));
    unsigned char magic[8] = {0};
    size_t got = fread(magic, 1, 8, f);
    rewind(f);
    int rc;
    if (got >= 3 && magic[0] == 0xFF && magic[1] == 0xD8 && magic[2] == 0xFF) {
        rc = decode_jpeg(f, rgb, h, w, err, errlen);
    } else if (got == 8 && !memcmp(magic, "\x89PNG\r\n\x1a\n", 8)) {
        rc = decode_png(path, rgb, h, w, err, errlen);
    } else {
        rc = data_errorf(err, errlen, "neither a JPEG nor a PNG file (by its first bytes)");
    }
    fclose(f);
    if (rc == 0 && (*h < 1 || *w < 1)) {
        free(*rgb);
        *rgb = NULL;
        rc = data_errorf(err, errlen, "an empty image");
    }
    return rc;
}

/* Bilinear, pixel centres aligned (PyTorch's align_corners=False), no antialiasing: dst
 * [dh, dw, 3] from src [sh, sw, 3]. */
void data_image_resize(const unsigned char *src, int sh, int sw, unsigned char *dst, int dh,
                       int dw) {
    if (sh == dh && sw == dw) {
        memcpy(dst, src, (size_t)sh * (size_t)sw * 3);
        return;
    }
    for (int y = 0; y < dh; y++) {
        double fy = ((double)y + 0.5) * sh / dh - 0.5;
        if (fy < 0) fy = 0;
        int y0 = (int)fy, y1 = y0 + 1 < sh ? y0 + 1 : sh - 1;
        double ay = fy - y0;
        for (int x = 0; x < dw; x++) {
            double fx = ((double)x + 0.5) * sw / dw - 0.5;
            if (fx < 0) fx = 0;
            int x0 = (int)fx, x1 = x0 + 1 < sw ? x0 + 1 : sw - 1;
            double ax = fx - x0;
            for (int c = 0; c < 3; c++) {
                double top = src[((size_t)y0 * sw + x0) * 3 + c] * (1 - ax) +
                             src[((size_t)y0 * sw + x1) * 3 + c] * ax;
                double bot = src[((size_t)y1 * sw + x0) * 3 + c] * (1 - ax) +
                             src[((size_t)y1 * sw + x1) * 3 + c] * ax;
                dst[((size_t)y * dw + x) * 3 + c] = (unsigned char)(top * (1 - ay) + bot * ay + 0.5);
            }
        }
    }
}
