/* trainer.c — setting up and freeing a VTrans run's parts together (see trainer.h). */
#include "train/trainer.h"

#include <stdlib.h>
#include <string.h>

int vt_trainer_init(trainer *t, const vt_model *teacher, const vt_calib *calib, const vt_vib_params *p,
                    vt_comm *comm) {
    memset(t, 0, sizeof *t);
    t->p = p;
    t->comm = comm;
    t->teacher = teacher;
    t->calib = calib;
    t->st.model = teacher;
    t->trace = getenv("VT_TRACE") && *getenv("VT_TRACE") && strcmp(getenv("VT_TRACE"), "0") != 0;
    t->ctx = vt_mean_ctx(calib->seq_len);
    t->dense_size = vt_structure_size(&teacher->cfg, vt_budget_spec_kind(&p->budget), t->ctx);
    return vt_train_geom_init(&t->g, p->schedule.batch_size, p->pipeline.micro_batches, p->pipeline.seq_chunks, comm->stages, comm->replicas,
                              calib->seq_len);
}

int vt_trainer_alloc(trainer *t) {
    if (vt_student_init(&t->st, t->teacher, t->p->vib.seed) || vt_train_optim_init(&t->opt, t->st.mk.n) ||
        vt_head_share_init(&t->head, t->comm, t->teacher, &t->g) || vt_trainer_alloc_student(t))
        return -1;
    return vt_train_batch_alloc(&t->batch, &t->g);
}

int vt_trainer_alloc_student(trainer *t) {
    int pack = t->p->pipeline.pack_weights && !t->opt.train_weights; /* packs only hold while the weights are frozen */
    return vt_student_alloc(&t->st, &t->g, vt_comm_last(t->comm), &t->head, pack);
}

int vt_trainer_cache_teacher(trainer *t) {
    vt_teacher_pass pass = {t->teacher, t->calib,   t->comm,          &t->g,
                            &t->head,   t->batch.tok, t->st.x, t->p->vib.temperature,
                            t->p->vib.mse_weight > 0};
    return vt_teacher_cache_build(&t->cache, &pass);
}

size_t vt_trainer_pack_bytes(const trainer *t) {
    size_t work;
    return vt_student_bytes(&t->st, &t->g, t->teacher->cfg.dim, &work) + t->head.part.pk[0].bytes +
           t->head.part.pk[1].bytes;
}

void vt_trainer_bytes(const trainer *t, size_t *weights, size_t *work) {
    size_t F = sizeof(float), head_w, head_work, student_work;
    int d = t->teacher->cfg.dim;
    const vt_train_optim *o = &t->opt;
    vt_head_share_bytes(&t->head, &t->g, d, &head_w, &head_work);
    size_t packs = vt_student_bytes(&t->st, &t->g, d, &student_work) + t->head.part.pk[0].bytes +
                   t->head.part.pk[1].bytes;
    *weights = vt_model_bytes(t->teacher) + (vt_student_owned(&t->st) ? F * t->st.own.arena_floats : 0) +
               (o->train_weights ? F * (o->dw.arena_floats + 2 * o->adam_w.n) : 0) + head_w + packs;
    *work = student_work + head_work +
            vt_teacher_cache_bytes(&t->cache, &t->g, t->comm, t->calib->n_seq, d);
}

void vt_trainer_free_work(trainer *t) {
    vt_student_free_bufs(&t->st, &t->g);
    vt_head_share_free(&t->head);
    vt_teacher_cache_free(&t->cache);
}

void vt_trainer_free(trainer *t) {
    vt_trainer_free_work(t);
    vt_student_free(&t->st, &t->g);
    vt_train_optim_free(&t->opt);
    vt_train_batch_free(&t->batch);
}
