/*
 * calib_impl.h — what calib.c and calib_fit.c share: the matrix index and
 * the feature helpers. Not for use outside daemon/calib.
 */
#ifndef ADAINFER_CALIB_IMPL_H
#define ADAINFER_CALIB_IMPL_H

#include "calib.h"

/* The cell of prompt i at layer l (1-based) in a calib_data matrix. */
#define AT(cd, i, l) ((size_t)(i) * (cd)->n_layers + (size_t)(l)-1)

/** The feature set o asks for, as exitclf_features would read it. */
unsigned calib_opts_features(const struct calib_opts *o, unsigned features);
/** The features of prompt i at layer (1-based), for exitclf. */
struct exitclf_feat calib_feat_at(const struct calib_data *cd, uint32_t i, uint32_t layer);
/**
 * φ under c (its features and tokens) of prompt i at its k checked layers
 * lay[0..k) into phi (k x EXITCLF_N_PHI), with the run state advanced exactly
 * as exitclf_score advances it.
 */
void calib_phi_seq(const struct calib_data *cd, uint32_t i, const uint32_t *lay, uint32_t k,
		   const struct exitclf *c, double *phi);
/** Checked layers of the schedule, 1-based, into out (capacity n_layers). Returns how many. */
uint32_t calib_checked_layers(const struct calib_data *cd, uint32_t min_layer, uint32_t stride,
			      uint32_t *out);
/**
 * The φ slots c's parameters use, ascending: the scalar features of its set,
 * the bias, then one per answer token when the set has token. Returns the
 * count (at most EXITCLF_N_PHI); every other slot of φ is 0 for c.
 */
int calib_phi_slots(const struct exitclf *c, int slot[EXITCLF_N_PHI]);

#endif
