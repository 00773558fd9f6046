/* spd_solve_mpi.c — (G + ridge I) X = B with ScaLAPACK's PDPOSV on a BLACS grid over a communicator. */
#include "spd_solve_mpi.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

/* ScaLAPACK ships no C header: the BLACS C interface, and the Fortran routines (every argument by
 * pointer) this file calls. */
int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_gridinit(int *ctxt, const char *order, int nprow, int npcol);
void Cblacs_gridinfo(int ctxt, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int ctxt);
void Cblacs_exit(int keep_mpi);
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc, const int *nprocs);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb, const int *irsrc,
               const int *icsrc, const int *ictxt, const int *lld, int *info);
void pdposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *ia, const int *ja,
             const int *desca, double *b, const int *ib, const int *jb, const int *descb, int *info);

typedef struct {
    MPI_Comm comm;
    int handle, ctxt, nb;
    int nprow, npcol, myrow, mycol;
} grid;

/* One rank's share of a block-cyclic matrix: rows x cols local, column-major, leading dim ld. */
typedef struct {
    double *x;
    int rows, cols, ld;
    int desc[9];
} local_part;

/* The global index of local index l along a dimension dealt in blocks of nb over p processes,
 * this one being number me (the first block on process 0). */
static size_t global_index(int l, int nb, int p, int me) {
    return ((size_t)(l / nb) * p + me) * nb + l % nb;
}

/* The local share of a rows x cols global matrix on this rank (descriptor made on every rank, also
 * on those that own no rows). Returns 0, or -1 when the memory is not there. */
static int part_init(local_part *a, const grid *g, int rows, int cols) {
    int zero = 0, info = 0;
    a->rows = numroc_(&rows, &g->nb, &g->myrow, &zero, &g->nprow);
    a->cols = numroc_(&cols, &g->nb, &g->mycol, &zero, &g->npcol);
    a->ld = a->rows > 1 ? a->rows : 1;
    descinit_(a->desc, &rows, &cols, &g->nb, &g->nb, &zero, &zero, &g->ctxt, &a->ld, &info);
    a->x = malloc(((size_t)a->ld * (a->cols > 1 ? a->cols : 1)) * sizeof(double));
    return a->x && info == 0 ? 0 : -1;
}

/* a (n x n) = lower triangle of g + ridge on the diagonal; the upper triangle is not read. */
static void fill_system(local_part *a, const grid *g, const double *src, size_t n, double ridge) {
    for (int jl = 0; jl < a->cols; jl++) {
        size_t j = global_index(jl, g->nb, g->npcol, g->mycol);
        for (int il = 0; il < a->rows; il++) {
            size_t i = global_index(il, g->nb, g->nprow, g->myrow);
            a->x[il + (size_t)jl * a->ld] = i < j ? 0 : src[i + j * n] + (i == j ? ridge : 0);
        }
    }
}

/* Copies between the local share b (of an n-row global matrix) and the global dense copy. */
static void copy_part(local_part *b, const grid *g, double *dense, size_t n, int to_dense) {
    for (int jl = 0; jl < b->cols; jl++) {
        size_t j = global_index(jl, g->nb, g->npcol, g->mycol);
        for (int il = 0; il < b->rows; il++) {
            size_t i = global_index(il, g->nb, g->nprow, g->myrow);
            double *local = &b->x[il + (size_t)jl * b->ld];
            if (to_dense)
                dense[i + j * n] = *local;
            else
                *local = dense[i + j * n];
        }
    }
}

int vt_mpi_sum_doubles(MPI_Comm comm, double *x, size_t n) {
    for (size_t done = 0; done < n;) {
        int count = n - done > INT_MAX ? INT_MAX : (int)(n - done);
        if (MPI_Allreduce(MPI_IN_PLACE, x + done, count, MPI_DOUBLE, MPI_SUM, comm) != MPI_SUCCESS)
            return vt_fail("sum of %zu doubles over the ranks failed (MPI_Allreduce)", n);
        done += (size_t)count;
    }
    return 0;
}

/* The worst status over comm, so every rank takes the same branch: st[0] a failed minor (> 0),
 * st[1] an error (1). Returns 0 or -1 when the reduction itself fails. */
static int agree(MPI_Comm comm, int st[2]) {
    return MPI_Allreduce(MPI_IN_PLACE, st, 2, MPI_INT, MPI_MAX, comm) == MPI_SUCCESS ? 0 : -1;
}

static int solve_mpi(vt_spd_solver *s, const double *gm, size_t n, double ridge, double *b, size_t m) {
    grid *g = s->impl;
    if (n == 0 || m == 0)
        return 0;
    if (n > INT_MAX || m > INT_MAX)
        return vt_fail("SPD solve: n %zu or %zu right-hand sides exceed ScaLAPACK's int", n, m);
    int ni = (int)n, mi = (int)m, one = 1, info = 0;
    local_part a = {0}, x = {0};
    int st[2] = {0, part_init(&a, g, ni, ni) || part_init(&x, g, ni, mi)};
    if (!st[1] && ((size_t)a.ld * a.cols > INT_MAX || (size_t)x.ld * x.cols > INT_MAX))
        st[1] = 2; /* ScaLAPACK addresses local arrays with int */
    if (agree(g->comm, st))
        st[1] = 1;
    if (!st[1]) {
        fill_system(&a, g, gm, n, ridge);
        copy_part(&x, g, b, n, 0);
        pdposv_("L", &ni, &mi, a.x, &one, &one, a.desc, x.x, &one, &one, x.desc, &info);
        st[0] = info > 0 ? info : 0;
        st[1] = info < 0;
        if (agree(g->comm, st))
            st[1] = 1;
    }
    int rc = st[1] ? -1 : st[0];
    if (rc == 0) {
        memset(b, 0, n * m * sizeof(double)); /* each element is owned by one rank: the sum is exact */
        copy_part(&x, g, b, n, 1);
        rc = vt_mpi_sum_doubles(g->comm, b, n * m);
    } else if (rc < 0)
        vt_fail("SPD solve (n %zu, %zu right-hand sides, %d x %d grid): %s", n, m, g->nprow, g->npcol,
                info < 0 ? "PDPOSV rejected an argument" : "out of memory or local share over 2^31 elements");
    free(a.x);
    free(x.x);
    return rc;
}

static void free_mpi(vt_spd_solver *s) {
    grid *g = s->impl;
    if (!g)
        return;
    Cblacs_gridexit(g->ctxt);
    Cfree_blacs_system_handle(g->handle);
    free(g);
    s->impl = NULL;
}

static int blacs_used; /* vt_spd_mpi_finish has something to release */

int vt_spd_solver_mpi(vt_spd_solver *s, MPI_Comm comm, int nb) {
    int ranks;
    blacs_used = 1;
    MPI_Comm_size(comm, &ranks);
    grid *g = calloc(1, sizeof *g);
    int bad = !g; /* gridinit below is collective: every rank goes on, or none */
    if (MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, comm) != MPI_SUCCESS || bad) {
        free(g);
        return vt_fail("ScaLAPACK grid over %d ranks: out of memory or MPI failure", ranks);
    }
    g->comm = comm;
    g->nb = nb > 0 ? nb : VT_SPD_BLOCK;
    int rows = 1;
    for (int r = 1; r * r <= ranks; r++)
        if (ranks % r == 0)
            rows = r; /* near-square: the largest divisor up to sqrt(ranks) */
    g->handle = Csys2blacs_handle(comm);
    g->ctxt = g->handle;
    Cblacs_gridinit(&g->ctxt, "Row", rows, ranks / rows);
    Cblacs_gridinfo(g->ctxt, &g->nprow, &g->npcol, &g->myrow, &g->mycol);
    *s = (vt_spd_solver){.impl = g, .solve = solve_mpi, .free = free_mpi};
    return 0;
}

void vt_spd_mpi_finish(void) {
    if (!blacs_used)
        return;
    blacs_used = 0;
    Cblacs_exit(1);
}
