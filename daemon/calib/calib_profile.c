/*
 * calib_profile.c — a calibration's outcome as a stopping profile: the
 * fitted classifier, where checks start, and where the numbers came from.
 * The one place calibration meets the profile format.
 */
#include "calib.h"

#include <math.h>
#include <time.h>

#include "daemon/base/util.h"

void
calib_profile(struct profile *p, const char *task, const struct exitclf *c,
	      const struct calib_result *res, const char *model_name, const char *model_sha256,
	      uint32_t n_layers, const char *calibration_data)
{
	time_t now = time(NULL);
	struct tm tm;

	profile_init(p);
	strlcpy_(p->task, task ? task : "", sizeof(p->task));
	p->pol.clf = *c;
	p->pol.min_layer = res->min_layer ? res->min_layer : 1;
	p->pol.stride = res->stride ? res->stride : 1;
	if (!isfinite(p->pol.clf.threshold)) {  /* no threshold pays off: never check, never stop */
		if (c->kind == EXITCLF_PROBE) { /* no weights needed for that: a plain gap rule */
			p->pol.clf.kind = EXITCLF_GAP;
			p->pol.clf.features = 0;
			p->pol.clf.probe = NULL;
		}
		p->pol.clf.threshold = p->pol.clf.kind == EXITCLF_SVM ? 1e6 : 2.0;
		p->pol.min_layer = n_layers ? n_layers : 1;
	}
	p->pol.clf.features = p->pol.clf.kind == EXITCLF_PROBE ? 0 : exitclf_features(&p->pol.clf);
	p->prov.present = true;
	strlcpy_(p->prov.model, model_name ? model_name : "", sizeof(p->prov.model));
	strlcpy_(p->prov.model_sha256, model_sha256 ? model_sha256 : "",
		 sizeof(p->prov.model_sha256));
	p->prov.n_layers = n_layers;
	strlcpy_(p->prov.calibration_data, calibration_data ? calibration_data : "",
		 sizeof(p->prov.calibration_data));
	if (gmtime_r(&now, &tm) != NULL)
		strftime(p->prov.date, sizeof(p->prov.date), "%Y-%m-%dT%H:%M:%SZ", &tm);
	p->prov.agreement = res->agreement;
	p->prov.pruning = res->pruning;
}
