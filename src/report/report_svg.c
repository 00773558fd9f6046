/* report_svg.c — the run report drawn as SVG (see report_svg.h). Plain text written with fprintf;
 * every coordinate is computed here, so the file needs nothing but an SVG viewer. */
#include "report/report_svg.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/error.h"

/* Page and per-layer panel geometry (pixels). */
enum { PAGE_W = 900, HEADER_H = 80, ROW_H = 19, BAR_H = 13 };
static const double COL_X0 = 84, COL_W = 266, BAR_W = 172; /* three columns of bars */
/* Curve panels: the plot box spans [PLOT_X0, PLOT_X1]; the right margin holds the end values. */
static const double PLOT_X0 = 80, PLOT_X1 = 812;
static const double SIZE_H = 190, KD_H = 170, BETA_H = 80;

#define C_HEADS "#4c72b0"
#define C_KV "#8172b3"
#define C_FFN "#dd8452"
#define C_SIZE "#1f5fa8"
#define C_TARGET "#c44e52"
#define C_KD "#2a8c7f"
#define C_BETA "#8c564b"
#define C_GRID "#e4e4e4"
#define C_REMOVED "#a32929"
#define C_FINETUNE "#fbf3e2"

/* ---- text ---- */

static void put_escaped(FILE *f, const char *s) {
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '&') fputs("&amp;", f);
        else if (ch == '<') fputs("&lt;", f);
        else if (ch == '>') fputs("&gt;", f);
        else if (ch == '"') fputs("&quot;", f);
        else if (ch < 0x20 && ch != '\t') fputc(' ', f); /* not allowed in XML 1.0 */
        else fputc(ch, f);
    }
}

/* <text x y attrs>formatted, escaped</text>; attrs is raw attribute text (may be ""). */
__attribute__((format(printf, 5, 6))) static void text(FILE *f, double x, double y, const char *attrs,
                                                        const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\"%s%s>", x, y, attrs[0] ? " " : "", attrs);
    put_escaped(f, buf);
    fputs("</text>\n", f);
}

/* A tick or value label: 0, 0.25, 3.5, 12k, 1.5M, 2.5e-5. */
static void fmt_num(char *buf, size_t cap, double v) {
    double a = fabs(v);
    if (a < 1e-12) snprintf(buf, cap, "0");
    else if (a >= 1e6) snprintf(buf, cap, "%gM", v / 1e6);
    else if (a >= 1e4) snprintf(buf, cap, "%gk", v / 1e3);
    else if (a < 1e-3) { /* 4e-4, 2.5e-5 */
        int e = (int)floor(log10(a));
        double m = v / pow(10, e);
        if (fabs(m) >= 9.995) m /= 10, e++;
        snprintf(buf, cap, "%.3ge%d", m, e);
    }
    else snprintf(buf, cap, "%.4g", v);
}

/* A count with 4 significant digits: 812, 129.9k, 6.738G. */
static void fmt_count(char *buf, size_t cap, double v) {
    if (v >= 1e9) snprintf(buf, cap, "%.4gG", v / 1e9);
    else if (v >= 1e6) snprintf(buf, cap, "%.4gM", v / 1e6);
    else if (v >= 1e3) snprintf(buf, cap, "%.4gk", v / 1e3);
    else snprintf(buf, cap, "%.0f", v);
}

/* A fraction as a percentage with at most 3 significant digits: 50%, 33.3%, 4.17%. */
static void fmt_pct(char *buf, size_t cap, double frac) { snprintf(buf, cap, "%.3g%%", 100.0 * frac); }

/* ---- plot frames ---- */

typedef struct {
    double x0, x1, y0, y1;   /* the plot box in pixels (y0 top) */
    double xlo, xhi;         /* data range on x */
    double ylo, yhi, ystep;  /* data range on y (log10 of it when ylog) and the tick step */
    int ylog, ypercent;
} frame;

static double fx(const frame *fr, double x) {
    double t = (x - fr->xlo) / (fr->xhi - fr->xlo);
    return fr->x0 + (t < 0 ? 0 : t > 1 ? 1 : t) * (fr->x1 - fr->x0);
}

static double fy(const frame *fr, double y) {
    double v = fr->ylog ? log10(y) : y, t = (v - fr->ylo) / (fr->yhi - fr->ylo);
    return fr->y1 - (t < 0 ? 0 : t > 1 ? 1 : t) * (fr->y1 - fr->y0);
}

static double nice_step(double span, int n) {
    double raw = span / n, mag = pow(10, floor(log10(raw))), r = raw / mag;
    return (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
}

/* A linear range over [lo, hi] rounded out to ticks, about n of them. */
static void nice_range(double lo, double hi, int n, double *olo, double *ohi, double *ostep) {
    if (!(hi > lo)) {
        double pad = fabs(lo) > 0 ? 0.1 * fabs(lo) : 1;
        hi += pad;
        lo = lo >= 0 && lo - pad < 0 ? 0 : lo - pad;
    }
    double st = nice_step(hi - lo, n);
    *olo = floor(lo / st + 1e-9) * st;
    *ohi = ceil(hi / st - 1e-9) * st;
    *ostep = st;
}

static void hline(FILE *f, double x0, double x1, double y, const char *stroke) {
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n", x0, y, x1, y, stroke);
}

static void vline(FILE *f, double x, double y0, double y1, const char *stroke) {
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n", x, y0, x, y1, stroke);
}

static void y_tick(FILE *f, const frame *fr, double v, int label) {
    double y = fy(fr, v);
    hline(f, fr->x0, fr->x1, y, C_GRID);
    hline(f, fr->x0 - 4, fr->x0, y, "#555");
    if (!label) return;
    char b[32];
    if (fr->ypercent) fmt_pct(b, sizeof b, v);
    else fmt_num(b, sizeof b, v);
    text(f, fr->x0 - 7, y + 4, "class=\"tick\" text-anchor=\"end\"", "%s", b);
}

/* Grid, ticks, tick labels, the box, the axis names. */
static void draw_axes(FILE *f, const frame *fr, const char *ylabel) {
    if (fr->ylog) {
        int e0 = (int)floor(fr->ylo + 1e-9), e1 = (int)ceil(fr->yhi - 1e-9), minor = e1 - e0 <= 3;
        for (int e = e0; e <= e1; e++) {
            y_tick(f, fr, pow(10, e), 1);
            if (minor && e < e1) {
                y_tick(f, fr, 2 * pow(10, e), 1);
                y_tick(f, fr, 5 * pow(10, e), 1);
            }
        }
    } else {
        int n = (int)lround((fr->yhi - fr->ylo) / fr->ystep);
        for (int k = 0; k <= n; k++) y_tick(f, fr, fr->ylo + k * fr->ystep, 1);
    }
    double xst = nice_step(fr->xhi - fr->xlo, 8);
    int nx = (int)floor((fr->xhi - fr->xlo) / xst + 1e-9);
    for (int k = 0; k <= nx; k++) {
        double v = fr->xlo + k * xst, x = fx(fr, v);
        char b[32];
        fmt_num(b, sizeof b, v);
        vline(f, x, fr->y0, fr->y1, C_GRID);
        vline(f, x, fr->y1, fr->y1 + 4, "#555");
        text(f, x, fr->y1 + 16, "class=\"tick\" text-anchor=\"middle\"", "%s", b);
    }
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#555\"/>\n", fr->x0,
            fr->y0, fr->x1 - fr->x0, fr->y1 - fr->y0);
    text(f, (fr->x0 + fr->x1) / 2, fr->y1 + 31, "class=\"axis\" text-anchor=\"middle\"", "optimizer step");
    double cy = (fr->y0 + fr->y1) / 2;
    fprintf(f, "<text x=\"18\" y=\"%.1f\" class=\"axis\" text-anchor=\"middle\" transform=\"rotate(-90 18 %.1f)\">",
            cy, cy);
    put_escaped(f, ylabel);
    fputs("</text>\n", f);
}

/* The step a record is drawn at: steps done (record steps count from 0). */
static double rec_x(const vt_train_record *r) { return (double)r->step + 1; }

/* Shades the fine-tuning phase and names both phases above the box. */
static void draw_phases(FILE *f, const frame *fr, const vt_train_record *r, size_t n) {
    int has0 = 0, has1 = 0;
    double end0 = fr->xlo;
    for (size_t i = 0; i < n; i++) {
        if (r[i].phase == 0) {
            has0 = 1;
            if (rec_x(&r[i]) > end0) end0 = rec_x(&r[i]);
        } else {
            has1 = 1;
        }
    }
    double xb = has0 ? fx(fr, end0) : fr->x0;
    if (has1) {
        fprintf(f, "<rect class=\"finetune\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n", xb,
                fr->y0, fr->x1 - xb, fr->y1 - fr->y0, C_FINETUNE);
        if (fr->x1 - xb >= 80)
            text(f, (xb + fr->x1) / 2, fr->y0 - 6, "class=\"phase\" text-anchor=\"middle\"", "fine-tuning");
        else
            text(f, xb + 3, fr->y0 - 6, "class=\"phase\"", "fine-tuning");
    }
    if (has0) {
        if (has1)
            fprintf(f,
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#8a6d3b\" "
                    "stroke-dasharray=\"3 3\"/>\n",
                    xb, fr->y0 - 14, xb, fr->y1);
        double w = xb - fr->x0;
        if (w >= 80) text(f, (fr->x0 + xb) / 2, fr->y0 - 6, "class=\"phase\" text-anchor=\"middle\"", "mask phase");
        else text(f, xb - 3, fr->y0 - 6, "class=\"phase\" text-anchor=\"end\"", "mask phase");
    }
}

typedef double (*rec_value)(const vt_train_record *r);
static double v_hard_size(const vt_train_record *r) { return r->hard_size; }
static double v_target(const vt_train_record *r) { return r->target; }
static double v_kd(const vt_train_record *r) { return r->kd; }
static double v_beta(const vt_train_record *r) { return r->beta; }

static int drawable(const frame *fr, double v) { return isfinite(v) && (!fr->ylog || v > 0); }

/* One point per record (records whose value cannot be drawn are left out); markers when few. */
static void curve(FILE *f, const frame *fr, const vt_train_record *r, size_t n, rec_value val, const char *cls,
                  const char *colour, const char *extra) {
    fprintf(f,
            "<polyline class=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" stroke-linejoin=\"round\"%s%s "
            "points=\"",
            cls, colour, extra[0] ? " " : "", extra);
    for (size_t i = 0; i < n; i++)
        if (drawable(fr, val(&r[i]))) fprintf(f, "%s%.1f,%.1f", i ? " " : "", fx(fr, rec_x(&r[i])), fy(fr, val(&r[i])));
    fputs("\"/>\n", f);
    if (n > 40 || extra[0]) return;
    for (size_t i = 0; i < n; i++)
        if (drawable(fr, val(&r[i])))
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n", fx(fr, rec_x(&r[i])),
                    fy(fr, val(&r[i])), colour);
}

/* The last drawable value of a curve, or NAN. */
static double last_value(const frame *fr, const vt_train_record *r, size_t n, rec_value val) {
    for (size_t i = n; i-- > 0;)
        if (drawable(fr, val(&r[i]))) return val(&r[i]);
    return NAN;
}

static void legend_line(FILE *f, double x, double y, const char *colour, int dashed, const char *label) {
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", x, y - 4,
            x + 22, y - 4, colour, dashed ? " stroke-dasharray=\"6 4\"" : "");
    text(f, x + 27, y, "class=\"legend\"", "%s", label);
}

static frame curve_frame(double top, double height, const vt_train_record *r, size_t n) {
    frame fr;
    memset(&fr, 0, sizeof fr);
    fr.x0 = PLOT_X0;
    fr.x1 = PLOT_X1;
    fr.y0 = top + 56;
    fr.y1 = fr.y0 + height;
    fr.xlo = 0;
    fr.xhi = 1;
    for (size_t i = 0; i < n; i++)
        if (rec_x(&r[i]) > fr.xhi) fr.xhi = rec_x(&r[i]);
    return fr;
}

static double curve_panel_height(double plot_h) { return 56 + plot_h + 42; }

/* (2) The kept size (hard) against the target ramp. */
static void panel_size(FILE *f, double top, const vt_train_record *r, size_t n) {
    frame fr = curve_frame(top, SIZE_H, r, n);
    fr.ylo = 0;
    fr.yhi = 1;
    fr.ystep = 0.2;
    fr.ypercent = 1;
    for (size_t i = 0; i < n; i++) { /* a size above the dense one (never expected) still fits */
        if (isfinite(r[i].hard_size) && r[i].hard_size > fr.yhi) fr.yhi = ceil(r[i].hard_size / 0.2) * 0.2;
        if (isfinite(r[i].target) && r[i].target > fr.yhi) fr.yhi = ceil(r[i].target / 0.2) * 0.2;
    }
    fprintf(f, "<g class=\"panel\" id=\"size\">\n");
    text(f, 16, top + 30, "class=\"h2\"", "Kept size over the run (fraction of the dense model)");
    legend_line(f, 530, top + 30, C_SIZE, 0, "kept size (hard gates)");
    legend_line(f, 716, top + 30, C_TARGET, 1, "target ramp");
    draw_phases(f, &fr, r, n);
    draw_axes(f, &fr, "kept size");
    curve(f, &fr, r, n, v_target, "target", C_TARGET, "stroke-dasharray=\"7 5\"");
    curve(f, &fr, r, n, v_hard_size, "size", C_SIZE, "");
    double vs = last_value(&fr, r, n, v_hard_size), vt = last_value(&fr, r, n, v_target);
    double ys = isfinite(vs) ? fy(&fr, vs) : NAN, yt = isfinite(vt) ? fy(&fr, vt) : NAN;
    if (isfinite(ys) && isfinite(yt) && fabs(ys - yt) < 13) { /* keep the two end labels apart */
        double mid = (ys + yt) / 2, up = vs >= vt ? -7 : 7;
        ys = mid + up;
        yt = mid - up;
    }
    char b[32];
    if (isfinite(vs)) {
        fmt_pct(b, sizeof b, vs);
        text(f, fr.x1 + 6, ys + 4, "class=\"end\" fill=\"" C_SIZE "\"", "%s", b);
    }
    if (isfinite(vt)) {
        fmt_pct(b, sizeof b, vt);
        text(f, fr.x1 + 6, yt + 4, "class=\"end\" fill=\"" C_TARGET "\"", "target %s", b);
    }
    fputs("</g>\n", f);
}

/* (3) the distillation loss (log scale when it spans more than a factor 20) and (4) beta. */
static void panel_values(FILE *f, double top, double height, const vt_train_record *r, size_t n, rec_value val,
                         const char *id, const char *title, const char *ylabel, const char *colour, int allow_log) {
    frame fr = curve_frame(top, height, r, n);
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double v = val(&r[i]);
        if (!isfinite(v)) continue;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    if (!isfinite(lo)) lo = hi = 0;
    fr.ylog = allow_log && lo > 0 && hi / lo > 20;
    if (fr.ylog) {
        fr.ylo = floor(log10(lo));
        fr.yhi = ceil(log10(hi));
    } else {
        nice_range(lo, hi, height < 120 ? 2 : 5, &fr.ylo, &fr.yhi, &fr.ystep);
    }
    fprintf(f, "<g class=\"panel\" id=\"%s\">\n", id);
    text(f, 16, top + 30, "class=\"h2\"", "%s%s", title, fr.ylog ? " (log scale)" : "");
    draw_phases(f, &fr, r, n);
    draw_axes(f, &fr, ylabel);
    curve(f, &fr, r, n, val, id, colour, "");
    double v = last_value(&fr, r, n, val);
    if (isfinite(v)) {
        char b[32], attrs[64];
        fmt_num(b, sizeof b, v);
        snprintf(attrs, sizeof attrs, "class=\"end\" fill=\"%s\"", colour);
        text(f, fr.x1 + 6, fy(&fr, v) + 4, attrs, "%s", b);
    }
    fputs("</g>\n", f);
}

/* ---- (1) the per-layer structure ---- */

/* One bar: kept of orig units as a fraction of the column width, or the hatched "removed". */
static void unit_bar(FILE *f, double x, double y, int kept, int orig, int removed, const char *colour) {
    if (orig <= 0) {
        text(f, x + 4, y + BAR_H - 2, "class=\"none\"", "none before");
        return;
    }
    if (removed) {
        fprintf(f,
                "<rect class=\"removed\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" fill=\"url(#hatch)\" "
                "stroke=\"#c9a0a0\"/>\n",
                x, y, BAR_W, BAR_H);
        text(f, x + BAR_W / 2, y + BAR_H - 2.5, "class=\"rm\" text-anchor=\"middle\"", "removed");
    } else {
        double frac = (double)kept / orig;
        frac = frac < 0 ? 0 : frac > 1 ? 1 : frac;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" fill=\"#edf0f4\"/>\n", x, y, BAR_W, BAR_H);
        fprintf(f, "<rect class=\"kept\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>\n", x, y,
                frac * BAR_W, BAR_H, colour);
    }
    text(f, x + BAR_W + 6, y + BAR_H - 2, "class=\"num\"", "%d/%d", kept, orig);
}

static double structure_height(int n_layers) { return 72 + n_layers * ROW_H + (n_layers > 12 ? 22 : 8); }

static void fraction_ticks(FILE *f, double y) {
    for (int c = 0; c < 3; c++)
        for (int k = 0; k <= 2; k++) {
            double x = COL_X0 + c * COL_W + k * BAR_W / 2;
            text(f, x, y, "class=\"tick\" text-anchor=\"middle\"", "%s", k == 0 ? "0" : k == 1 ? "50%" : "100%");
        }
}

static void panel_structure(FILE *f, double top, const vt_config *b, const vt_config *a) {
    static const char *const names[3] = {"query heads", "KV heads", "FFN neurons"};
    static const char *const colours[3] = {C_HEADS, C_KV, C_FFN};
    int n = b->n_layers;
    double rows0 = top + 68, rows1 = rows0 + n * ROW_H;
    fprintf(f, "<g class=\"panel\" id=\"structure\">\n");
    text(f, 16, top + 26, "class=\"h2\"", "Kept per layer (bar: kept / original)");
    fprintf(f, "<rect x=\"560\" y=\"%.1f\" width=\"26\" height=\"%d\" fill=\"url(#hatch)\" stroke=\"#c9a0a0\"/>\n",
            top + 16, BAR_H);
    text(f, 592, top + 26, "class=\"legend\"", "block removed (attention or MLP)");
    for (int c = 0; c < 3; c++) {
        char attrs[64];
        snprintf(attrs, sizeof attrs, "class=\"col\" fill=\"%s\"", colours[c]);
        text(f, COL_X0 + c * COL_W, top + 48, attrs, "%s", names[c]);
    }
    fraction_ticks(f, top + 63);
    for (int l = 0; l < n; l++) {
        const vt_layer_shape *s0 = &b->layers[l], *s = &a->layers[l];
        int attn_gone = s0->n_heads > 0 && s->n_heads == 0, mlp_gone = s0->ffn > 0 && s->ffn == 0;
        int layer_gone = (attn_gone || s0->n_heads == 0) && (mlp_gone || s0->ffn == 0) && (attn_gone || mlp_gone);
        double y = rows0 + l * ROW_H;
        fprintf(f, "<g class=\"layer\" data-layer=\"%d\">\n", l);
        if (layer_gone || l % 2)
            fprintf(f, "<rect x=\"10\" y=\"%.1f\" width=\"%d\" height=\"%d\" fill=\"%s\"/>\n", y, PAGE_W - 20, ROW_H,
                    layer_gone ? "#f8e6e6" : "#f6f7f9");
        text(f, 16, y + 14, layer_gone ? "class=\"lname\" fill=\"" C_REMOVED "\"" : "class=\"lname\"", "layer %d", l);
        double by = y + (ROW_H - BAR_H) / 2.0;
        unit_bar(f, COL_X0, by, s->n_heads, s0->n_heads, attn_gone, C_HEADS);
        unit_bar(f, COL_X0 + COL_W, by, s->n_kv_heads, s0->n_kv_heads, attn_gone, C_KV);
        unit_bar(f, COL_X0 + 2 * COL_W, by, s->ffn, s0->ffn, mlp_gone, C_FFN);
        fputs("</g>\n", f);
    }
    for (int c = 0; c < 3; c++) /* the 100% line: the original size */
        for (int k = 1; k <= 2; k++) {
            double x = COL_X0 + c * COL_W + k * BAR_W / 2;
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#9aa3ad\"%s/>\n", x, rows0 - 2,
                    x, rows1 + 2, k == 1 ? " stroke-dasharray=\"2 3\"" : "");
        }
    if (n > 12) fraction_ticks(f, rows1 + 15);
    fputs("</g>\n", f);
}

/* ---- the stages: masks, re-fit, recovery ---- */

static int has_stages(const vt_run_report *r) { return r && (r->reconstruct || r->recover); }

static double stages_height(const vt_run_report *r) { return 64 + 18.0 * (2 + !!r->reconstruct + !!r->recover) + 8; }

/* The re-fit's relative output errors over every re-fitted projection: mean before and after. */
static void refit_means(const vt_run_report *r, double *before, double *after, int *n) {
    *before = *after = 0, *n = 0;
    for (int i = 0; r->refit && i < r->before->n_layers * VT_REFIT_SLOTS; i++)
        if (r->refit[i].done) *before += r->refit[i].err_before, *after += r->refit[i].err_after, (*n)++;
    if (*n) *before /= *n, *after /= *n;
}

static void stage_row(FILE *f, double y, const char *name, double seconds, long tokens, double ppl, const char *note) {
    char tk[32], pp[32];
    fmt_count(tk, sizeof tk, (double)tokens);
    if (isfinite(ppl)) snprintf(pp, sizeof pp, "%.4g", ppl);
    else snprintf(pp, sizeof pp, "\xe2\x80\x94");
    text(f, 24, y, "class=\"lname\"", "%s", name);
    if (isfinite(seconds)) text(f, 200, y, "class=\"num\"", "%.1f s", seconds);
    else text(f, 200, y, "class=\"num\"", "\xe2\x80\x94");
    text(f, 300, y, "class=\"num\"", "%s", tokens > 0 ? tk : "0");
    text(f, 420, y, "class=\"num\"", "%s", pp);
    if (note && note[0]) text(f, 520, y, "class=\"num\"", "%s", note);
}

/* One row per stage: time, tokens trained on, perplexity after it; the re-fit's mean error. */
static void panel_stages(FILE *f, double top, const vt_run_report *r) {
    text(f, 16, top + 22, "class=\"h2\"", "Stages");
    double y = top + 44;
    text(f, 24, y, "class=\"col\"", "stage");
    text(f, 200, y, "class=\"col\"", "time");
    text(f, 300, y, "class=\"col\"", "tokens trained");
    text(f, 420, y, "class=\"col\"", "perplexity after");
    stage_row(f, y += 18, "dense", NAN, 0, r->ppl_before, "");
    stage_row(f, y += 18, "masks", r->prune_seconds, r->train_tokens - r->recover_tokens, vt_report_stage_ppl(r, 0), "");
    if (r->reconstruct) {
        double b, a;
        int n;
        char note[96] = "";
        refit_means(r, &b, &a, &n);
        if (n) snprintf(note, sizeof note, "relative output error %.3g \xe2\x86\x92 %.3g (mean of %d)", b, a, n);
        stage_row(f, y += 18, "re-fit", r->refit_seconds, 0, vt_report_stage_ppl(r, 1), note);
    }
    if (r->recover) {
        char note[96];
        snprintf(note, sizeof note, "%s, %ld steps, loss %.4g \xe2\x86\x92 %.4g", r->recover, r->recover_steps,
                 r->recover_loss[0], r->recover_loss[1]);
        stage_row(f, y += 18, "recovery", r->recover_seconds, r->recover_tokens, vt_report_stage_ppl(r, 2), note);
    }
}

/* ---- the document ---- */

static void totals(const vt_config *b, const vt_config *a, int *hb, int *ha, int *kb, int *ka, int *fb, int *fa,
                   int *blocks, int *layers) {
    *hb = *ha = *kb = *ka = *fb = *fa = *blocks = *layers = 0;
    for (int l = 0; l < b->n_layers; l++) {
        const vt_layer_shape *s0 = &b->layers[l], *s = &a->layers[l];
        *hb += s0->n_heads, *ha += s->n_heads, *kb += s0->n_kv_heads, *ka += s->n_kv_heads;
        *fb += s0->ffn, *fa += s->ffn;
        int ag = s0->n_heads && !s->n_heads, mg = s0->ffn && !s->ffn;
        *blocks += ag + mg;
        *layers += !s->n_heads && !s->ffn && (ag || mg);
    }
}

static void draw(FILE *f, const vt_config *b, const vt_config *a, const vt_train_record *r, size_t n,
                 const char *title, const vt_run_report *rep) {
    int has_beta = 0;
    for (size_t i = 0; i < n; i++) has_beta |= isfinite(r[i].beta) && r[i].beta != 0;
    double h_struct = structure_height(b->n_layers);
    double height = HEADER_H + h_struct + 12 + (has_stages(rep) ? stages_height(rep) : 0);
    if (n) height += curve_panel_height(SIZE_H) + curve_panel_height(KD_H);
    if (n && has_beta) height += curve_panel_height(BETA_H);
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%.0f\" viewBox=\"0 0 %d %.0f\" "
            "font-family=\"DejaVu Sans, Verdana, Arial, Helvetica, sans-serif\">\n",
            PAGE_W, height, PAGE_W, height);
    fputs("<title>", f);
    put_escaped(f, title && title[0] ? title : "VTrans run report");
    fputs("</title>\n", f);
    fputs("<style>\n"
          ".h1 { font-size: 17px; font-weight: bold; }\n"
          ".sub1 { font-size: 13.5px; fill: #222; }\n"
          ".sub2 { font-size: 12.5px; fill: #444; }\n"
          ".h2 { font-size: 14px; font-weight: bold; }\n"
          ".col { font-size: 12.5px; font-weight: bold; }\n"
          ".tick { font-size: 10.5px; fill: #555; }\n"
          ".axis { font-size: 11.5px; fill: #444; }\n"
          ".legend { font-size: 11.5px; fill: #333; }\n"
          ".phase { font-size: 11px; fill: #7a5c2e; font-style: italic; }\n"
          ".lname { font-size: 11.5px; }\n"
          ".num { font-size: 11px; fill: #333; }\n"
          ".none { font-size: 11px; fill: #888; font-style: italic; }\n"
          ".rm { font-size: 10.5px; font-weight: bold; fill: " C_REMOVED "; }\n"
          ".end { font-size: 11.5px; font-weight: bold; }\n"
          "</style>\n",
          f);
    fputs("<defs><pattern id=\"hatch\" patternUnits=\"userSpaceOnUse\" width=\"6\" height=\"6\" "
          "patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#f7eeee\"/>"
          "<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#dcb8b8\" stroke-width=\"2.5\"/></pattern></defs>\n",
          f);
    fprintf(f, "<rect width=\"%d\" height=\"%.0f\" fill=\"#ffffff\"/>\n", PAGE_W, height);

    int hb, ha, kb, ka, fb, fa, blocks, layers;
    totals(b, a, &hb, &ha, &kb, &ka, &fb, &fa, &blocks, &layers);
    text(f, 16, 26, "class=\"h1\"", "%s", title && title[0] ? title : "VTrans run report");
    char removed[96];
    int k = snprintf(removed, sizeof removed, "%d block%s removed", blocks, blocks == 1 ? "" : "s");
    if (layers)
        snprintf(removed + k, sizeof removed - (size_t)k, " (%d whole layer%s)", layers, layers == 1 ? "" : "s");
    text(f, 16, 48, "class=\"sub1\"", "hidden dims kept %d of %d \xc2\xb7 %s", a->dim, b->dim, removed);
    text(f, 16, 66, "class=\"sub2\"",
         "kept over all layers: query heads %d/%d \xc2\xb7 KV heads %d/%d \xc2\xb7 FFN neurons %d/%d", ha, hb, ka,
         kb, fa, fb);

    double y = HEADER_H;
    panel_structure(f, y, b, a);
    y += h_struct;
    if (has_stages(rep)) {
        panel_stages(f, y, rep);
        y += stages_height(rep);
    }
    if (!n) {
        fputs("</svg>\n", f);
        return;
    }
    panel_size(f, y, r, n);
    y += curve_panel_height(SIZE_H);
    panel_values(f, y, KD_H, r, n, v_kd, "kd", "Distillation loss (KD)", "KD loss", C_KD, 1);
    y += curve_panel_height(KD_H);
    if (has_beta) panel_values(f, y, BETA_H, r, n, v_beta, "beta", "beta (KL weight)", "beta", C_BETA, 0);
    fputs("</svg>\n", f);
}

/* The two configurations have the same layers (a removed block has 0 units in after). */
static int check_configs(const char *path, const vt_config *b, const vt_config *a) {
    if (!b || !a) return vt_fail("%s: cannot draw the report: it lacks the configuration before or after", path);
    if (!b->layers || !a->layers || b->n_layers != a->n_layers)
        return vt_fail("%s: cannot draw the report: the configurations before (%d layers) and after (%d layers) differ",
                       path, b->n_layers, a->n_layers);
    return 0;
}

/* rep (NULL: none) adds the stages panel. */
static int write_svg(const char *path, const vt_config *before, const vt_config *after,
                     const vt_train_record *records, size_t n_records, const char *title, const vt_run_report *rep) {
    if (check_configs(path, before, after)) return -1;
    FILE *f = fopen(path, "w");
    if (!f) return vt_fail("%s: cannot write the report picture: %s", path, strerror(errno));
    draw(f, before, after, records, records ? n_records : 0, title, rep);
    int bad = ferror(f) || fflush(f) != 0;
    int err = errno;
    if (fclose(f) != 0 && !bad) bad = 1, err = errno;
    if (bad) {
        unlink(path);
        return vt_fail("%s: cannot write the report picture: %s", path, strerror(err));
    }
    return 0;
}

int vt_report_svg_write(const char *path, const vt_config *before, const vt_config *after,
                        const vt_train_record *records, size_t n_records, const char *title) {
    return write_svg(path, before, after, records, n_records, title, NULL);
}

/* ---- from the run report ---- */

/* "VTrans full: FLOP budget 50%, achieved 49.8% · 129.9k of 260k parameters", and after a re-fit
 * " · perplexity 56.38 masks only, 40.47 re-fitted". */
static void report_title(const vt_run_report *r, char *out, size_t cap) {
    size_t k = (size_t)snprintf(out, cap, "VTrans run report");
    if (r->method) {
        if (strcmp(r->method, "vib") == 0)
            k = (size_t)snprintf(out, cap, "VTrans%s%s", r->variant ? " " : "", r->variant ? r->variant : "");
        else
            k = (size_t)snprintf(out, cap, "%s baseline", r->method);
    }
    char p1[32], p2[32];
    if (r->budget_kind && isfinite(r->budget_target) && isfinite(r->budget_achieved) && k < cap) {
        fmt_pct(p1, sizeof p1, r->budget_target);
        fmt_pct(p2, sizeof p2, r->budget_achieved);
        k += (size_t)snprintf(out + k, cap - k, ": %s budget %s, achieved %s",
                              strcmp(r->budget_kind, "params") == 0 ? "parameter" : "FLOP", p1, p2);
    }
    if (k < cap) {
        fmt_count(p1, sizeof p1, (double)vt_params_total(r->after));
        fmt_count(p2, sizeof p2, (double)vt_params_total(r->before));
        k += (size_t)snprintf(out + k, cap - k, " \xc2\xb7 %s of %s parameters", p1, p2);
    }
    if (r->ppl_masks > 0 && isfinite(r->ppl_after) && k < cap) /* what the re-fit (and recovery) did */
        snprintf(out + k, cap - k, " \xc2\xb7 perplexity %.4g masks only, %.4g %s", r->ppl_masks, r->ppl_after,
                 r->recover ? "recovered" : "re-fitted");
}

int vt_report_svg_write_report(const vt_run_report *r, const char *path) {
    char title[256];
    if (check_configs(path, r->before, r->after)) return -1; /* before the title counts their parameters */
    report_title(r, title, sizeof title);
    return write_svg(path, r->before, r->after, r->losses, r->n_losses, title, r);
}
