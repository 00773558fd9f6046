/* cmd_eval.c — `vtrans-dist eval`: perplexity of a model on a data file (README.md, "Evaluation protocol"). */
#include "util/args.h"
#include "cli/commands.h"
#include "util/error.h"
#include "nn/eval.h"
#include "cli/eval_cli.h"
#include "nn/model.h"

int vt_cmd_eval(int argc, char **argv) {
    vt_eval_options o;
    int help;
    if (vt_eval_options_parse(&o, argc, argv, &help)) return vt_cmd_fail("eval");
    if (help) {
        vt_eval_usage();
        return 0;
    }
    if (o.stages > 1) {
        vt_fail("--stages %d needs a multiple of %d ranks (mpirun -n %d or more); this is one process", o.stages,
                o.stages, o.stages);
        return vt_cmd_fail("eval");
    }
    vt_tokens ids = {0};
    vt_model m;
    vt_eval_result r;
    vt_eval_progress progress;
    if (vt_eval_read_tokens(&o, &ids)) return vt_cmd_fail("eval");
    int rc = 1;
    if (vt_model_load(&m, o.model, vt_load_all()) == 0) {
        vt_eval_progress_start(&progress);
        if (vt_eval_stream(&m, ids.ids, ids.n, o.window, o.batch, &r, vt_eval_progress_report, &progress) == 0) {
            vt_eval_print(&o, &r);
            rc = 0;
        }
        vt_model_free(&m);
    }
    vt_tokens_free(&ids);
    return rc ? vt_cmd_fail("eval") : 0;
}
