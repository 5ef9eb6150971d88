/*
 * proto.h — the adainfer wire protocol, shared by adainferd and the client
 * library. adainfer-protocol(7) is the specification; this comment sums it
 * up, and every key the page documents has a PROTO_K_* name below
 * (tests/lint/protokeys.py checks that the two agree key for key).
 *
 * TRANSPORT. A Unix stream socket carrying a sequence of MessagePack values
 * (no extra framing), each one a MessagePack-RPC message:
 *
 *   request       [0, msgid, method, params]    client -> daemon
 *   response      [1, msgid, error, result]     daemon -> client
 *   notification  [2, method, params]           daemon -> client
 *
 * msgid is an unsigned 32-bit integer chosen by the client; the response to
 * a request carries the same msgid. params is an array holding zero or one
 * map of named parameters: [] or [{"task": "sst2", ...}]. A bare map is also
 * accepted in place of the array. Parameter maps are checked strictly:
 * an unknown key, a wrong type or a value out of range is a
 * PROTO_ERR_BAD_REQUEST naming the key.
 *
 * A client may pipeline: send many requests without waiting. Responses come
 * back in completion order, not request order (a `stats` sent after a long
 * `complete` is usually answered first); match them by msgid.
 *
 * ERRORS. In a response exactly one of error and result is nil. error is a map
 *   {"code": int, "name": str, "message": str}
 * with code from enum proto_err below (name is proto_err_name(code), e.g.
 * "busy"). Errors tied to no request (a malformed stream, a refused peer)
 * are sent as a notification [2, "error", [{"code", "name", "message"}]];
 * after one of those the daemon closes the connection.
 *
 * STRINGS. Text the daemon returns (generated text, token pieces) is raw
 * bytes and may not be UTF-8 (a byte-fallback token can split a character);
 * it is sent as MessagePack str when valid UTF-8 and as bin otherwise.
 * Text parameters (prompt, text, stop strings) may be str or bin.
 *
 * LIMITS. Every message is checked while it is being read, before any
 * allocation depends on it: a message longer than the daemon's
 * limits.max_message_bytes (default PROTO_MAX_MSG_DEFAULT), or a str, bin,
 * ext, array or map header whose declared length exceeds it, or nesting
 * deeper than PROTO_MAX_DEPTH, gets an "error" notification
 * (PROTO_ERR_TOO_LARGE or PROTO_ERR_BAD_REQUEST) and the connection is
 * closed. Bytes that are not MessagePack are treated the same way.
 *
 * METHODS (params keys in the PROTO_K_* constants; "?" marks optional keys).
 *
 * "ping"        params: none. result: {"pong": true}. Answered on the loop.
 *
 * "info"        params: none. result:
 *     version: str (daemon version), protocol: int (PROTO_VERSION),
 *     model: {name: str, arch: str, path: str, sha256: str (hex of the file),
 *             n_layers, n_vocab, n_ctx (context the daemon serves),
 *             n_ctx_train, n_embd, n_heads, n_kv_heads: int,
 *             kv_cache: str ("f32" or "f16", the KV cache element type),
 *             file_type: int (GGUF general.file_type),
 *             mapped_bytes: int (size of the read-only mapping),
 *             file_state: str ("unchanged", "modified" in place since it
 *             was mapped, or "replaced" by another file at its path),
 *             rss_extra_bytes: int (resident memory beyond the mapping),
 *             chat_template: str (the template chat uses: the config's
 *             chat_template, else the one recognised in the model; "" when
 *             the model has none, "unknown" when it is not recognised),
 *             check_cost: float (one stopping check, i.e. one logit-lens
 *             evaluation, in layers of a one-token batch; for an n-token
 *             prompt it is check_cost / n)},
 *     tasks: [str] (tasks with a loaded profile),
 *     profiles: {task: {classifier: str, threshold: float, min_layer: int,
 *                       ...} } (as loaded),
 *     limits: {max_message_bytes, max_prompt_tokens, max_tokens,
 *              max_connections, max_queued, deadline_ms, idle_timeout_ms: int},
 *     workers: int,
 *     kernels: {simd: str (the SIMD level chosen at run time), blas: str
 *               (the OpenBLAS core in use)}.
 *
 * "complete"    params:
 *     prompt?: str|bin    text, tokenized by the daemon with BOS added
 *     tokens?: [int]      token ids instead of prompt (exactly one of the two)
 *     task?: str          profile to stop with; absent or "" with
 *                         full_depth false uses no profile (full depth)
 *     max_tokens?: int    tokens to generate, 1..limits.max_tokens (default 1)
 *     stop?: [str|bin]    up to PROTO_MAX_STOP strings; generation ends when
 *                         the generated text contains one (it is kept)
 *     temperature?: float 0 = greedy (default 0)
 *     top_p?: float       (0, 1], default 1
 *     seed?: int          sampling seed, default 0
 *     stream?: bool       send a "token" notification per generated token
 *     full_depth?: bool   run every layer even with a task
 *     trace?: bool        add "trace" (as the trace method's result) for the prompt
 *     profile?: map       inline profile (same schema as a YAML profile) used
 *                         instead of the task's; for experiments
 *     deadline_ms?: int   per-request deadline, capped by limits.deadline_ms
 *     eos?: bool          stop at an end-of-generation token: eos, eot, eom
 *                         or an EOG control token such as <|eot_id|> (default
 *                         true); it is never part of the text
 *     parse_special?: bool tokenize control-token text in prompt ("<|im_end|>")
 *                         as the control ids (default false: plain text)
 *     speculative?: bool  lossless self-speculative decoding (default false):
 *                         the task's profile drafts tokens with early exit,
 *                         one full-depth batch verifies them, so the output
 *                         is full-depth greedy; needs temperature 0 (else
 *                         PROTO_ERR_BAD_REQUEST); without a profile it is
 *                         plain full depth
 *     draft?: int         drafts per verification, 1..PROTO_MAX_DRAFT
 *                         (default 1); only with speculative true
 *   result:
 *     text: str|bin (generated text only), tokens: [int] (generated ids),
 *     exit_layers: [int] (1-based layer each token was taken from),
 *     n_prompt: int, n_layers: int, layers_run: int, layers_skipped: int,
 *     stop_reason: str ("length", "eos", "stop", "context"),
 *     task: str, timings: {queue_s, prefill_s, decode_s, features_s, total_s},
 *     trace?: {...} when trace was asked,
 *     speculative?: {drafted: int, accepted: int, verified: int} when
 *       speculative was asked (drafts made, drafts kept, verification
 *       batches; exit_layers are then all n_layers, layers_run counts the
 *       drafts' and verifications' layers, layers_skipped the drafts').
 *   A cancelled request answers PROTO_ERR_CANCELLED and one past its deadline
 *   PROTO_ERR_TIMEOUT (the partial result is dropped).
 *
 * "chat"        params: complete's without prompt/tokens, plus
 *     messages: [{role: str, content: str}]  roles "system", "user",
 *                         "assistant"; at least one message
 *     template?: str      a template name ("chatml", "llama3", ...) instead
 *                         of the model's (config chat_template:, else the
 *                         GGUF tokenizer.chat_template recognised as
 *                         llama.cpp does)
 *   The messages are rendered with the template and the assistant's
 *   generation prompt, tokenized with parse_special on, and run as complete
 *   runs a prompt; the result is complete's. No recognisable template is a
 *   PROTO_ERR_BAD_REQUEST whose message names the chat_template: key.
 *
 * "token"       notification sent during a streamed complete or chat:
 *     [2, "token", [{msgid: int, index: int (0-based), id: int,
 *                    text: str|bin (the piece), exit_layer: int}]]
 *   All token notifications of a request precede its response.
 *
 * "trace"       params: prompt?|tokens?, parse_special? (as complete), top_k?: int
 *               (1..PROTO_MAX_TOP_K, default 10), logit_ids?: [int] (1..
 *               PROTO_MAX_LOGIT_IDS token ids), hidden?: bool (default false). Full-depth
 *               run of the prompt. result:
 *     tokens: [int], n_layers: int,
 *     layers: [{layer: int (1-based), top1: int, top1_text: str|bin,
 *               top_prob: float, gap: float, logits?: [float] (with
 *               logit_ids: the lens logits of those ids, in their order), hidden?: bin
 *               (with hidden: the final norm of the last position's hidden state,
 *               n_embd float32 little-endian, the probe's input)}]
 *             one per layer,
 *     top: [{id: int, text: str|bin, logit: float, prob: float}] the final
 *          layer's top_k by logit,
 *     check_cost?: float (the trace method only: wall time of its lens
 *          evaluations over that of its layers, i.e. one stopping check in
 *          layers of this prompt, measured on this run),
 *     check_cost_answers?: float (with logit_ids: the same for the
 *          answer-set lens over those ids, timed apart on this run),
 *     check_cost_probe?: float (with hidden: the same for the hidden-state
 *          probe's check, the final norm and n_embd multiply-adds).
 *
 * "tokenize"    params: text: str|bin, add_bos?: bool (default true),
 *               parse_special?: bool (default false, as complete).
 *               result: {tokens: [int]}
 * "detokenize"  params: tokens: [int]. result: {text: str|bin}
 *
 * "stats"       params: none. result:
 *     uptime_s: float, connections: int (open), connections_total: int,
 *     queue_depth: int, queue_max: int, running: int,
 *     tokens_in: int, tokens_out: int,
 *     tasks: {task: {requests: {outcome: int}   outcome is "ok" or an error name
 *                    tokens_in, tokens_out, layers_run, layers_skipped: int,
 *                    pruning_ratio: float (skipped / (run + skipped)),
 *                    latency_ms: {p50, p95, p99: float}}}
 *     (requests without a task are counted under "" ),
 *     prefix_cache: {budget_bytes, bytes, entries, hits, misses, tokens_reused,
 *                    tokens_computed, evictions: int}   (daemon/prefix.h)
 *
 * "reload"      params: none. Re-reads the config file and profiles, as
 *               SIGHUP does. result: {model_changed: bool, tasks: [str]};
 *               on a bad config PROTO_ERR_RELOAD with the file:line:column
 *               message, and the old configuration stays.
 *
 * "cancel"      params: msgid: int (of an earlier request on the same
 *               connection). result: {cancelled: bool} (false when it had
 *               already been answered or was never seen). When true, the request
 *               is answered with PROTO_ERR_CANCELLED.
 *
 * This module packs and validates; it knows nothing of libuv or the engine.
 */
#ifndef ADAINFER_PROTO_H
#define ADAINFER_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "daemon/base/util.h"

/* ---- constants ---------------------------------------------------------- */

/** Incremented on any incompatible change of the shapes documented above. */
#define PROTO_VERSION 1

/** Message kinds, the first element of every message. */
enum proto_kind {
	PROTO_REQUEST = 0,
	PROTO_RESPONSE = 1,
	PROTO_NOTIFICATION = 2,
};

/** Default and hard upper bound of one message's size in bytes. */
#define PROTO_MAX_MSG_DEFAULT (1u << 20)
#define PROTO_MAX_MSG_LIMIT   (64u << 20)
/** Smallest accepted max_message_bytes (an info response must fit). */
#define PROTO_MAX_MSG_MIN 4096u
/** Deepest accepted nesting of arrays and maps (the envelope is level 1). */
#define PROTO_MAX_DEPTH 32
/** Longest method name. */
#define PROTO_MAX_METHOD 32
/** Most stop strings per request, and the longest one in bytes. */
#define PROTO_MAX_STOP     16
#define PROTO_MAX_STOP_LEN 256
/** Most logit_ids of a trace. */
#define PROTO_MAX_LOGIT_IDS 64
/** Largest top_k of a trace. */
#define PROTO_MAX_TOP_K 100
/** Most drafts per verification of a speculative complete (the engine's RUNNER_DRAFT_MAX). */
#define PROTO_MAX_DRAFT 32

/* Method names. */
#define PROTO_M_PING       "ping"
#define PROTO_M_INFO       "info"
#define PROTO_M_COMPLETE   "complete"
#define PROTO_M_TRACE      "trace"
#define PROTO_M_TOKENIZE   "tokenize"
#define PROTO_M_DETOKENIZE "detokenize"
#define PROTO_M_STATS      "stats"
#define PROTO_M_RELOAD     "reload"
#define PROTO_M_CANCEL     "cancel"
#define PROTO_M_CHAT       "chat"
/* Notification names. */
#define PROTO_N_TOKEN "token"
#define PROTO_N_ERROR "error"

/* Keys of the error map. */
#define PROTO_K_CODE    "code"
#define PROTO_K_NAME    "name"
#define PROTO_K_MESSAGE "message"

/* Parameter keys. */
#define PROTO_K_PROMPT      "prompt"
#define PROTO_K_TOKENS      "tokens"
#define PROTO_K_TASK        "task"
#define PROTO_K_MAX_TOKENS  "max_tokens"
#define PROTO_K_STOP        "stop"
#define PROTO_K_TEMPERATURE "temperature"
#define PROTO_K_TOP_P       "top_p"
#define PROTO_K_SEED        "seed"
#define PROTO_K_STREAM      "stream"
#define PROTO_K_FULL_DEPTH  "full_depth"
#define PROTO_K_TRACE       "trace"
#define PROTO_K_PROFILE     "profile"
#define PROTO_K_DEADLINE_MS "deadline_ms"
#define PROTO_K_EOS         "eos"
#define PROTO_K_TOP_K       "top_k"
#define PROTO_K_TEXT        "text"
#define PROTO_K_ADD_BOS     "add_bos"
#define PROTO_K_MSGID       "msgid"
/* chat, and control-token parsing (complete, trace, tokenize, chat) */
#define PROTO_K_PARSE_SPECIAL "parse_special"
#define PROTO_K_MESSAGES      "messages"
#define PROTO_K_ROLE          "role"
#define PROTO_K_CONTENT       "content"
#define PROTO_K_TEMPLATE      "template"

/* Result keys (besides the parameter keys reused above). */
#define PROTO_K_PONG           "pong"
#define PROTO_K_VERSION        "version"
#define PROTO_K_PROTOCOL       "protocol"
#define PROTO_K_MODEL          "model"
#define PROTO_K_TASKS          "tasks"
#define PROTO_K_PROFILES       "profiles"
#define PROTO_K_LIMITS         "limits"
#define PROTO_K_WORKERS        "workers"
#define PROTO_K_EXIT_LAYERS    "exit_layers"
#define PROTO_K_EXIT_LAYER     "exit_layer"
#define PROTO_K_N_PROMPT       "n_prompt"
#define PROTO_K_N_LAYERS       "n_layers"
#define PROTO_K_LAYERS_RUN     "layers_run"
#define PROTO_K_LAYERS_SKIPPED "layers_skipped"
#define PROTO_K_STOP_REASON    "stop_reason"
#define PROTO_K_TIMINGS        "timings"
#define PROTO_K_INDEX          "index"
#define PROTO_K_ID             "id"
#define PROTO_K_LAYERS         "layers"
#define PROTO_K_LAYER          "layer"
#define PROTO_K_TOP1           "top1"
#define PROTO_K_TOP1_TEXT      "top1_text"
#define PROTO_K_TOP_PROB       "top_prob"
#define PROTO_K_GAP            "gap"
#define PROTO_K_TOP            "top"
#define PROTO_K_LOGIT          "logit"
#define PROTO_K_LOGITS         "logits"
#define PROTO_K_LOGIT_IDS      "logit_ids"
#define PROTO_K_HIDDEN         "hidden"
#define PROTO_K_PROB           "prob"
#define PROTO_K_CANCELLED      "cancelled"
#define PROTO_K_MODEL_CHANGED  "model_changed"
#define PROTO_K_UPTIME_S       "uptime_s"
#define PROTO_K_CONNECTIONS    "connections"
#define PROTO_K_QUEUE_DEPTH    "queue_depth"
#define PROTO_K_TOKENS_IN      "tokens_in"
#define PROTO_K_TOKENS_OUT     "tokens_out"
#define PROTO_K_REQUESTS       "requests"
#define PROTO_K_PRUNING_RATIO  "pruning_ratio"
#define PROTO_K_LATENCY_MS     "latency_ms"
/* ... and those of info's model, limits and profiles, stats and timings. */
#define PROTO_K_ARCH                  "arch"
#define PROTO_K_CHECK_COST            "check_cost"
#define PROTO_K_CHECK_COST_ANSWERS    "check_cost_answers"
#define PROTO_K_CHECK_COST_PROBE      "check_cost_probe"
#define PROTO_K_CHAT_TEMPLATE         "chat_template"
#define PROTO_K_CLASSIFIER            "classifier"
#define PROTO_K_CONNECTIONS_TOTAL     "connections_total"
#define PROTO_K_DECODE_S              "decode_s"
#define PROTO_K_FEATURES_S            "features_s"
#define PROTO_K_FILE_STATE            "file_state"
#define PROTO_K_FILE_TYPE             "file_type"
#define PROTO_K_IDLE_TIMEOUT_MS       "idle_timeout_ms"
#define PROTO_K_MAPPED_BYTES          "mapped_bytes"
#define PROTO_K_MAX_CONNECTIONS       "max_connections"
#define PROTO_K_MAX_MESSAGE_BYTES     "max_message_bytes"
#define PROTO_K_MAX_PROMPT_TOKENS     "max_prompt_tokens"
#define PROTO_K_MAX_QUEUED            "max_queued"
#define PROTO_K_MAX_WRITE_QUEUE_BYTES "max_write_queue_bytes"
#define PROTO_K_MIN_LAYER             "min_layer"
#define PROTO_K_N_CTX                 "n_ctx"
#define PROTO_K_N_CTX_TRAIN           "n_ctx_train"
#define PROTO_K_KV_CACHE              "kv_cache"
#define PROTO_K_N_EMBD                "n_embd"
#define PROTO_K_N_HEADS               "n_heads"
#define PROTO_K_N_KV_HEADS            "n_kv_heads"
#define PROTO_K_N_VOCAB               "n_vocab"
#define PROTO_K_P50                   "p50"
#define PROTO_K_P95                   "p95"
#define PROTO_K_P99                   "p99"
#define PROTO_K_PATH                  "path"
#define PROTO_K_PREFILL_S             "prefill_s"
#define PROTO_K_QUEUE_MAX             "queue_max"
#define PROTO_K_QUEUE_S               "queue_s"
#define PROTO_K_RSS_EXTRA_BYTES       "rss_extra_bytes"
#define PROTO_K_RUNNING               "running"
#define PROTO_K_SHA256                "sha256"
#define PROTO_K_THRESHOLD             "threshold"
#define PROTO_K_TOTAL_S               "total_s"
#define PROTO_K_N_CHECKS              "n_checks"
#define PROTO_K_STRIDE                "stride"
#define PROTO_K_SOURCE                "source"
#define PROTO_K_KERNELS               "kernels"
#define PROTO_K_SIMD                  "simd"
#define PROTO_K_BLAS                  "blas"
#define PROTO_K_AGREEMENT             "agreement"
#define PROTO_K_PRUNING               "pruning"
/* ... and the stats' prompt-prefix cache map */
#define PROTO_K_PREFIX_CACHE    "prefix_cache"
#define PROTO_K_BUDGET_BYTES    "budget_bytes"
#define PROTO_K_BYTES           "bytes"
#define PROTO_K_ENTRIES         "entries"
#define PROTO_K_HITS            "hits"
#define PROTO_K_MISSES          "misses"
#define PROTO_K_TOKENS_REUSED   "tokens_reused"
#define PROTO_K_TOKENS_COMPUTED "tokens_computed"
#define PROTO_K_EVICTIONS       "evictions"
/* speculative complete: the parameters and the result's counters */
#define PROTO_K_SPECULATIVE "speculative"
#define PROTO_K_DRAFT       "draft"
#define PROTO_K_DRAFTED     "drafted"
#define PROTO_K_ACCEPTED    "accepted"
#define PROTO_K_VERIFIED    "verified"

/* stats: "shadow", live agreement with full depth per task (also agreement, pruning_ratio) */
#define PROTO_K_SHADOW           "shadow"
#define PROTO_K_SHADOW_RATE      "rate"
#define PROTO_K_SHADOW_LIVE      "early_exit_requests"
#define PROTO_K_SHADOW_SAMPLED   "sampled"
#define PROTO_K_SHADOW_RUNS      "shadow_runs"
#define PROTO_K_SHADOW_AGREE     "agree"
#define PROTO_K_SHADOW_AGREE_SEQ "agree_sequence"
#define PROTO_K_SHADOW_INTERVAL  "agreement_interval"
#define PROTO_K_SHADOW_TARGET    "target"
#define PROTO_K_SHADOW_DRIFT     "drift"
#define PROTO_K_SHADOW_DROPPED   "dropped"
#define PROTO_K_SHADOW_PREEMPTED "preempted"
#define PROTO_K_SHADOW_EARLY_S   "early_s"
#define PROTO_K_SHADOW_FULL_S    "full_depth_s"
#define PROTO_K_SHADOW_SPEEDUP   "speedup"

/**
 * Wire error codes. The numbers are part of the protocol: never renumber,
 * only append.
 */
enum proto_err {
	PROTO_ERR_NONE = 0,
	PROTO_ERR_BAD_REQUEST = 1,    /* malformed envelope, wrong param type/key/range */
	PROTO_ERR_NO_METHOD = 2,      /* unknown method */
	PROTO_ERR_UNKNOWN_TASK = 3,   /* no profile for the task */
	PROTO_ERR_TOO_LARGE = 4,      /* message, prompt tokens or max_tokens over a limit */
	PROTO_ERR_CONTEXT = 5,        /* prompt (plus one token) does not fit the context */
	PROTO_ERR_BUSY = 6,           /* request queue full; retry later */
	PROTO_ERR_CANCELLED = 7,      /* cancelled by `cancel` or by shutdown */
	PROTO_ERR_TIMEOUT = 8,        /* deadline passed */
	PROTO_ERR_DENIED = 9,         /* peer credentials not in the allow lists */
	PROTO_ERR_LIMIT = 10,         /* too many connections */
	PROTO_ERR_SHUTTING_DOWN = 11, /* the daemon is stopping */
	PROTO_ERR_RELOAD = 12,        /* reload failed; old configuration kept */
	PROTO_ERR_INTERNAL = 13,      /* a bug or an out-of-memory; logged by the daemon */
	PROTO_ERR_COUNT
};

/** Lower-case name of e ("bad_request", "busy", ...); "unknown" outside the enum. */
const char *proto_err_name(int e);

/* ---- envelopes ----------------------------------------------------------- */

/** A validated incoming message; every pointer borrows from the msgpack object. */
struct proto_msg {
	enum proto_kind kind;
	bool has_msgid;     /* msgid could be read (set even when validation failed later) */
	uint32_t msgid;     /* request, response */
	const char *method; /* request, notification; not NUL-terminated */
	size_t method_len;
	const msgpack_object *params; /* request, notification: the params map, or NULL for none */
	const msgpack_object *error;  /* response: nil or the error map */
	const msgpack_object *result; /* response */
};

/**
 * Validates o as a message the way neovim's msgpack_rpc_validate does: an
 * array of 4 (request, response) or 3 (notification) elements, an integer
 * kind, a msgid that fits uint32, a string method of at most
 * PROTO_MAX_METHOD bytes, params an array of at most one map (or a map).
 * Returns 0, or -EPROTO with each failure its own message in d; m->has_msgid
 * tells whether a reply can be addressed. m borrows from o.
 */
int proto_msg_parse(const msgpack_object *o, struct proto_msg *m, struct diag *d);

/** True when m's method equals name. */
bool proto_msg_is(const struct proto_msg *m, const char *name);

/** Packs the head of a request: [0, msgid, method, — the caller packs params (an array). Returns 0
 * or -ENOMEM. */
int proto_pack_request(msgpack_packer *pk, uint32_t msgid, const char *method);
/** Packs the head of a success response: [1, msgid, nil, — the caller packs the result. */
int proto_pack_result(msgpack_packer *pk, uint32_t msgid);
/** Packs a whole error response [1, msgid, {code, name, message}, nil]. */
int proto_pack_error(msgpack_packer *pk, uint32_t msgid, enum proto_err code, const char *message);
/** Packs the head of a notification: [2, method, — the caller packs params (an array). */
int proto_pack_notification(msgpack_packer *pk, const char *method);
/** Packs a whole notification [2, "error", [{code, name, message}]]. */
int proto_pack_error_notification(msgpack_packer *pk, enum proto_err code, const char *message);

/**
 * An outgoing message: proto_out_init, pack into o->pk, then proto_out_take
 * the bytes, or proto_out_deinit to drop them. The one place that turns a
 * packer's buffer into a writable message (the length is read before the
 * buffer is released: C leaves the order of a call's arguments open).
 */
struct proto_out {
	msgpack_sbuffer sb;
	msgpack_packer pk;
};

void proto_out_init(struct proto_out *o);
/** Frees what was packed; o may be initialised again. */
void proto_out_deinit(struct proto_out *o);
/**
 * When rc == 0 returns the packed bytes (the caller frees them with free())
 * and their length in *len; when rc < 0 (packing failed) frees them and
 * returns NULL. Either way o is left deinitialised.
 */
char *proto_out_take(struct proto_out *o, int rc, size_t *len);

/** Packs a NUL-terminated string as str. */
int proto_pack_cstr(msgpack_packer *pk, const char *s);
/** One map entry: the key k, then the unsigned v. 0 or -ENOMEM. */
int proto_pack_kv_u64(msgpack_packer *pk, const char *k, uint64_t v);
/** Packs bytes as str when they are valid UTF-8, else as bin. */
int proto_pack_text(msgpack_packer *pk, const char *s, size_t len);
/**
 * Packs bytes as str, always: a character cut at the end is dropped (the text
 * ends on a UTF-8 boundary) and each other byte that does not start a valid
 * UTF-8 sequence becomes U+FFFD, so an error message that echoes client bytes
 * is still a valid str for strict clients.
 */
int proto_pack_str_lossy(msgpack_packer *pk, const char *s, size_t len);
/** True when s[0..len) is valid UTF-8 (no overlongs, no surrogates). */
bool proto_utf8_valid(const char *s, size_t len);

/* ---- typed getters ----------------------------------------------------------
 * All take a map (or NULL, meaning "no params") and a key. They return 0 and
 * fill *out when the key is present with the right type and in range,
 * -ENOENT when absent (out untouched; d says "missing parameter 'key'"),
 * -EINVAL for a wrong type ("parameter 'key': expected integer, got str"),
 * -ERANGE when out of range. Outputs borrow from the map.
 */

/** The value of key in map, or NULL (also when map is NULL or not a map). */
const msgpack_object *proto_map_get(const msgpack_object *map, const char *key);
/** Every key of map is a string listed in allowed (NULL-terminated); else -EINVAL naming the key.
 */
int proto_check_keys(const msgpack_object *map, const char *const *allowed, struct diag *d);
/** A str (only) holding valid UTF-8 (it may be echoed back: stats, results, errors). */
int proto_get_str(const msgpack_object *map, const char *key, const char **s, size_t *len,
		  struct diag *d);
/** A str or bin (raw bytes). */
int proto_get_bytes(const msgpack_object *map, const char *key, const char **s, size_t *len,
		    struct diag *d);
/** An integer in [min, max]. */
int proto_get_int(const msgpack_object *map, const char *key, int64_t min, int64_t max,
		  int64_t *out, struct diag *d);
/** A float or integer in [min, max] (NaN refused). */
int proto_get_float(const msgpack_object *map, const char *key, double min, double max, double *out,
		    struct diag *d);
/** A bool. */
int proto_get_bool(const msgpack_object *map, const char *key, bool *out, struct diag *d);
/** An array of at most max_len elements. */
int proto_get_array(const msgpack_object *map, const char *key, size_t max_len,
		    const msgpack_object **out, struct diag *d);
/** A map. */
int proto_get_map(const msgpack_object *map, const char *key, const msgpack_object **out,
		  struct diag *d);
/** MessagePack type name of o for messages ("str", "integer", "map", ...). */
const char *proto_type_name(const msgpack_object *o);

/* ---- bounded streaming reader -----------------------------------------------
 * Bytes from a stream go in; whole messages come out. The reader scans each
 * message's structure incrementally *before* handing it to msgpack-c: a
 * declared str/bin/ext length or array/map count larger than max_msg, a
 * message longer than max_msg or nesting deeper than PROTO_MAX_DEPTH is
 * rejected at the header, so msgpack-c never allocates from a size the peer
 * declared. Buffered bytes never exceed max_msg + PROTO_READ_CHUNK, and a
 * buffer grown past one chunk is freed once it holds nothing.
 */
#define PROTO_READ_CHUNK (64u << 10)

struct proto_reader {
	char *buf; /* owned; buf[0..len) unconsumed bytes, a message starts at buf[0] */
	size_t len, cap;
	size_t max_msg;
	size_t scan;   /* bytes of the current message scanned so far */
	uint64_t skip; /* payload bytes still to skip before the next header */
	uint32_t depth;
	uint64_t remain[PROTO_MAX_DEPTH + 1]; /* items left at each open container */
	int err;                              /* sticky: once a stream is bad it stays bad */
};

/** Initialises r with a message limit (PROTO_MAX_MSG_MIN..PROTO_MAX_MSG_LIMIT). Returns 0 or
 * -EINVAL. */
int proto_reader_init(struct proto_reader *r, size_t max_msg);
/** Frees the buffer; safe on a zeroed reader. */
void proto_reader_deinit(struct proto_reader *r);
/**
 * Makes room for reading: *buf, *len receive a writable region (for a
 * libuv alloc_cb or read(2)). Returns 0, -ENOMEM, or -EMSGSIZE when the
 * buffered partial message already exceeds the limit.
 */
int proto_reader_reserve(struct proto_reader *r, char **buf, size_t *len);
/** Records that n bytes were written into the region from proto_reader_reserve. */
void proto_reader_commit(struct proto_reader *r, size_t n);
/** Copies n bytes in (reserve + memcpy + commit). Returns 0, -ENOMEM or -EMSGSIZE. */
int proto_reader_feed(struct proto_reader *r, const char *data, size_t n);
/**
 * Extracts the next whole message into out (which the caller initialised
 * with msgpack_unpacked_init and destroys with msgpack_unpacked_destroy;
 * a previous message in out is released). The message's bytes belong to
 * out's zone. Returns 1 with a message, 0 when more bytes are needed,
 * -EMSGSIZE (too large: length, declared size), -EPROTO (not MessagePack,
 * nesting too deep) with the reason in d. Errors are sticky.
 */
int proto_reader_next(struct proto_reader *r, msgpack_unpacked *out, struct diag *d);
/** Bytes buffered but not yet returned as messages. */
size_t proto_reader_pending(const struct proto_reader *r);

#endif
