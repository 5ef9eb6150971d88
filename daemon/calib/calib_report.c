/*
 * calib_report.c — renders calib.c's evaluation for people: the per-layer
 * table and the summary block the CLI prints after `calibrate` and `eval`.
 * Formatting only: it computes nothing that calib.c does not already hold,
 * and writes only to the FILE it is given.
 */
#include <math.h>

#include "calib.h"

static void
pct(FILE *f, double v)
{
	if (isnan(v))
		fprintf(f, "     -");
	else
		fprintf(f, " %5.1f", 100.0 * v);
}

void
calib_print_layers(FILE *f, const struct calib_eval *ev)
{
	fprintf(f, "layer  agree%%   acc%% oracle%%  stop%%\n");
	for (uint32_t l = 0; l < ev->n_layers; l++) {
		const struct calib_layer_row *r = &ev->layers[l];

		fprintf(f, "%5u ", l + 1);
		pct(f, r->agree);
		pct(f, ev->has_gold ? r->acc : NAN);
		fprintf(f, " ");
		pct(f, r->oracle_share);
		pct(f, r->stop_share);
		fputc('\n', f);
	}
}

void
calib_print_summary(FILE *f, const char *title, const struct calib_eval *ev)
{
	if (title != NULL)
		fprintf(f, "%s\n", title);
	fprintf(f, "  prompts            %u\n", ev->n);
	if (ev->has_gold) {
		fprintf(f, "  accuracy full      %.3f\n", ev->acc_full);
		fprintf(f, "  accuracy adaptive  %.3f (%+.1f points)\n", ev->acc_adaptive,
			100.0 * (ev->acc_adaptive - ev->acc_full));
	}
	fprintf(f, "  agreement          %.3f\n", ev->agreement);
	fprintf(f, "  pruning ratio      %.3f (oracle %.3f, %.0f%% of it)\n", ev->pruning,
		ev->oracle_pruning,
		ev->oracle_pruning > 0 ? 100.0 * ev->pruning / ev->oracle_pruning : 0.0);
	fprintf(f, "  mean exit layer    %.2f of %u\n", ev->mean_exit, ev->n_layers);
}
