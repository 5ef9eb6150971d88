"""adainferd `chat`, `parse_special` and end-of-generation stops, on models
written here whose next token is known in advance.

The model (scripts/make-random-model.py's GGUF writer, our own) has every
layer's matrices zero, so the hidden state is the last token's embedding and
the logits are output · norm(embedding): a fixed next-token table. Each
token's embedding is a one-hot slot; output row t has a 1 at the slot of
the tokens that t follows:

  "\\n" (the byte token)  ->  "▁a"
  "▁a"                   ->  <|im_end|>   (control; an end-of-generation token, not eos)
  <|im_end|>             ->  "▁c"
  anything else          ->  "▁b"

So chatml's generation prompt ("...assistant\\n") is answered " a" and then
<|im_end|>, where generation must stop (it is not eos_id 2), and parsing
"<|im_end|>" in a prompt as the control id or as text changes the answer.
"""

import importlib.util
import os
import shutil
import struct
import tempfile
from array import array

from daemon_util import MODEL, SRC, Daemon, check, run, skip_unless_daemon

skip_unless_daemon()

spec = importlib.util.spec_from_file_location(
    "make_random_model", os.path.join(SRC, "scripts", "make-random-model.py"))
mrm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mrm)

DIM, LAYERS, HEADS, FFN, CTX = 16, 2, 2, 32, 256
CHATML_JINJA = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if "
                "add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def write_model(path, chat_template):
    tokens, scores, types = mrm.vocabulary(300)
    tokens += ["<|im_start|>", "<|im_end|>"]
    scores += [0.0, 0.0]
    types += [mrm.TT_CONTROL, mrm.TT_CONTROL]
    n_vocab = len(tokens)
    ids = {t: i for i, t in enumerate(tokens)}
    nl, a, b, c, im_end = ids["<0x0A>"], ids["\u2581a"], ids["\u2581b"], ids["\u2581c"], \
        ids["<|im_end|>"]
    slot = {nl: 1, a: 2, im_end: 3}          # every other token: slot 0
    follows = {a: 1, im_end: 2, c: 3, b: 0}  # output row -> the slot it answers

    w = mrm.GGUFWriter()
    w.str("general.architecture", "llama")
    w.str("general.name", "chat test model")
    w.u32("general.file_type", 0)
    w.u32("general.alignment", mrm.ALIGNMENT)
    for k, v in (("context_length", CTX), ("embedding_length", DIM), ("block_count", LAYERS),
                 ("feed_forward_length", FFN), ("rope.dimension_count", DIM // HEADS),
                 ("attention.head_count", HEADS), ("attention.head_count_kv", HEADS),
                 ("vocab_size", n_vocab)):
        w.u32("llama." + k, v)
    w.f32("llama.rope.freq_base", 10000.0)
    w.f32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.str("tokenizer.ggml.model", "llama")
    w.arr_str("tokenizer.ggml.tokens", tokens)
    w.arr_f32("tokenizer.ggml.scores", scores)
    w.arr_i32("tokenizer.ggml.token_type", types)
    w.u32("tokenizer.ggml.bos_token_id", 1)
    w.u32("tokenizer.ggml.eos_token_id", 2)
    w.u32("tokenizer.ggml.unknown_token_id", 0)
    w.bool("tokenizer.ggml.add_bos_token", True)
    w.bool("tokenizer.ggml.add_eos_token", False)
    if chat_template is not None:
        w.str("tokenizer.chat_template", chat_template)

    data = {}
    emb = array("f", [0.0]) * (DIM * n_vocab)
    out = array("f", [0.0]) * (DIM * n_vocab)
    for t in range(n_vocab):
        emb[t * DIM + slot.get(t, 0)] = 1.0
    for t, s in follows.items():
        out[t * DIM + s] = 1.0
    data["token_embd.weight"] = ([DIM, n_vocab], emb)
    kv = DIM  # head_count_kv == head_count
    for l in range(LAYERS):
        p = "blk.%d." % l
        for name, ne in (("attn_norm", [DIM]), ("attn_q", [DIM, DIM]), ("attn_k", [DIM, kv]),
                         ("attn_v", [DIM, kv]), ("attn_output", [DIM, DIM]),
                         ("ffn_norm", [DIM]), ("ffn_gate", [DIM, FFN]), ("ffn_up", [DIM, FFN]),
                         ("ffn_down", [FFN, DIM])):
            n = 1
            for d in ne:
                n *= d
            data[p + name + ".weight"] = (ne, array("f", [1.0 if len(ne) == 1 else 0.0]) * n)
    data["output_norm.weight"] = ([DIM], array("f", [1.0]) * DIM)
    data["output.weight"] = ([DIM, n_vocab], out)
    for name, (ne, _) in data.items():
        w.tensor(name, ne, mrm.GGML_TYPE_F32, 4)
    with open(path, "wb") as f:
        f.write(w.header())
        for name, ne, _, nbytes, offset in w.tensors:
            arr = data[name][1]
            if struct.pack("=H", 1) != b"\x01\x00":
                arr = array("f", arr)
                arr.byteswap()
            raw = arr.tobytes()
            f.write(raw + b"\0" * (-len(raw) % mrm.ALIGNMENT))
    return ids


TMP = tempfile.mkdtemp(prefix="adainfer-chat-")
CHAT_MODEL = os.path.join(TMP, "chatml.gguf")
ODD_MODEL = os.path.join(TMP, "odd.gguf")
IDS = write_model(CHAT_MODEL, CHATML_JINJA)
write_model(ODD_MODEL, "{{ messages | weird_filter }}")
A, B, C, IM_START, IM_END = (IDS[k] for k in ("\u2581a", "\u2581b", "\u2581c", "<|im_start|>",
                                               "<|im_end|>"))
D = Daemon(model=CHAT_MODEL)
MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def chatml(msgs):
    return "".join("<|im_start|>%s\n%s<|im_end|>\n" % (m["role"], m["content"]) for m in msgs) + \
        "<|im_start|>assistant\n"


def t_info():
    c = D.client()
    check(c.ok("info")["model"]["chat_template"] == "chatml", "info names the template")


def t_parse_special_tokenize():
    c = D.client()
    on = c.ok("tokenize", {"text": "x<|im_end|>y", "add_bos": False, "parse_special": True})
    off = c.ok("tokenize", {"text": "x<|im_end|>y", "add_bos": False, "parse_special": False})
    dflt = c.ok("tokenize", {"text": "x<|im_end|>y", "add_bos": False})
    check(on["tokens"].count(IM_END) == 1, "parsed: %r" % on)
    check(IM_END not in off["tokens"] and len(off["tokens"]) > 3, "as text: %r" % off)
    check(dflt == off, "default is off")
    c.error("tokenize", {"text": "x", "parse_special": 1}, "bad_request")


def t_parse_special_complete_trace():
    c = D.client()
    # the last prompt token decides: <|im_end|> -> "▁c"; its text's last byte '>' -> "▁b"
    on = c.ok("complete", {"prompt": "x<|im_end|>", "parse_special": True, "eos": False})
    off = c.ok("complete", {"prompt": "x<|im_end|>", "eos": False})
    check(on["tokens"] == [C] and off["tokens"] == [B], "on %r off %r" % (on, off))
    check(on["n_prompt"] < off["n_prompt"], "one id for the marker")
    tr = c.ok("trace", {"prompt": "x<|im_end|>", "parse_special": True, "top_k": 1})
    check(tr["tokens"][-1] == IM_END and tr["top"][0]["id"] == C, "trace: %r" % tr["top"])
    tr = c.ok("trace", {"prompt": "x<|im_end|>", "top_k": 1})
    check(IM_END not in tr["tokens"] and tr["top"][0]["id"] == B, "trace off: %r" % tr["top"])


def t_eog_stop_complete():
    c = D.client()
    # "\n" -> "▁a" -> <|im_end|>: an EOG token that is not eos_id, never in the output
    r = c.ok("complete", {"prompt": "x\n", "max_tokens": 5})
    check(r["tokens"] == [A] and r["stop_reason"] == "eos", "stopped at <|im_end|>: %r" % r)
    check(r["text"] == " a", "text %r" % r["text"])
    r = c.ok("complete", {"prompt": "x\n", "max_tokens": 5, "eos": False})
    check(r["tokens"] == [A, IM_END, C, B, B] and r["stop_reason"] == "length",
          "eos false runs past it: %r" % r["tokens"])
    check(r["text"] == " a c b b", "a control token has no text: %r" % r["text"])


def t_chat():
    c = D.client()
    r = c.ok("chat", {"messages": MSGS, "max_tokens": 8})
    check(r["tokens"] == [A] and r["stop_reason"] == "eos" and r["text"] == " a",
          "answer then <|im_end|>: %r" % r)
    # exactly complete on the rendered chatml with parse_special
    want = c.ok("tokenize", {"text": chatml(MSGS), "parse_special": True})["tokens"]
    check(want.count(IM_START) == 3 and want.count(IM_END) == 2, "markers as ids: %r" % want)
    check(r["n_prompt"] == len(want), "n_prompt %d vs %d" % (r["n_prompt"], len(want)))
    same = c.ok("complete", {"prompt": chatml(MSGS), "parse_special": True, "max_tokens": 8})
    for k in ("tokens", "text", "n_prompt", "stop_reason", "exit_layers"):
        check(same[k] == r[k], "%s: chat %r, complete %r" % (k, r[k], same[k]))
    for k in ("layers_run", "layers_skipped", "task", "timings", "n_layers"):
        check(k in r, "complete's result key %s" % k)
    r = c.ok("chat", {"messages": MSGS, "max_tokens": 3, "eos": False})
    check(r["tokens"] == [A, IM_END, C] and r["stop_reason"] == "length", "eos false: %r" % r)


def t_chat_stream():
    c = D.client()
    notes = []
    msgid = c.send("chat", {"messages": MSGS, "max_tokens": 8, "stream": True})
    err, res = c.response(msgid, notes)
    check(err is None, "chat stream: %r" % err)
    toks = [n[2][0] for n in notes if n[1] == "token"]
    check([t["id"] for t in toks] == [A] and toks[0]["text"] == " a",
          "one token notification, no <|im_end|>: %r" % toks)


def t_chat_template_param():
    c = D.client()
    r = c.ok("chat", {"messages": MSGS, "template": "zephyr", "max_tokens": 1})
    z = "<|system|>\nBe brief.<|endoftext|>\n<|user|>\nHi<|endoftext|>\n<|assistant|>\n"
    want = c.ok("tokenize", {"text": z, "parse_special": True})["tokens"]
    check(r["n_prompt"] == len(want), "zephyr rendering: %d vs %d" % (r["n_prompt"], len(want)))
    e = c.error("chat", {"messages": MSGS, "template": "nope"}, "bad_request")
    check("unknown template 'nope'" in e["message"], e["message"])
    c.error("chat", {"messages": MSGS, "template": 3}, "bad_request")


def t_chat_malformed():
    c = D.client()
    cases = [
        ({}, "missing parameter 'messages'"),
        ({"messages": "hi"}, "expected array"),
        ({"messages": []}, "empty"),
        ({"messages": ["hi"]}, "messages[0]: expected a map"),
        ({"messages": [{"content": "x"}]}, "messages[0]: missing 'role'"),
        ({"messages": [MSGS[0], {"role": "user"}]}, "messages[1]: missing 'content'"),
        ({"messages": [{"role": 1, "content": "x"}]}, "messages[0].role: expected str, got"),
        ({"messages": [{"role": "user", "content": b"x"}]}, "messages[0].content: expected str"),
        ({"messages": [{"role": "user", "content": None}]}, "messages[0].content: expected str"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "must be system, user or assistant"),
        ({"messages": [{"role": "user", "content": "x", "name": "n"}]}, "unknown key 'name'"),
        ({"messages": [{"role": "user", "content": "x", 7: "n"}]}, "keys must be str"),
        ({"messages": MSGS, "prompt": "x"}, "unknown parameter 'prompt'"),
        ({"messages": MSGS, "tokens": [1]}, "unknown parameter 'tokens'"),
        ({"messages": MSGS, "parse_special": False}, "unknown parameter 'parse_special'"),
        ({"messages": MSGS, "max_tokens": 0}, "max_tokens"),
    ]
    for params, text in cases:
        e = c.error("chat", params, "bad_request")
        check(text in e["message"], "%r: %r lacks %r" % (params, e["message"], text))
    # huge: the rendered prompt is refused by the prompt-token limit, before tokenizing
    big = [{"role": "user", "content": "a " * 200000}]
    e = c.error("chat", {"messages": big}, "too_large")
    check("limit" in e["message"], e["message"])
    many = [{"role": "user", "content": "x"}] * 20000
    c.error("chat", {"messages": many}, "too_large")
    D.alive_and_answering()


def t_no_or_odd_template():
    # tiny-tasks.gguf has no chat template; odd.gguf one no rule recognises
    for model, text in ((MODEL, "has no chat template"), (ODD_MODEL, "not one adainferd")):
        d = Daemon(model=model)
        try:
            c = d.client()
            check(c.ok("info")["model"]["chat_template"] in ("", "unknown"), "info")
            e = c.error("chat", {"messages": MSGS}, "bad_request")
            check(text in e["message"] and "chat_template:" in e["message"] and d.conf in
                  e["message"], "names the key and the file: %r" % e["message"])
            r = c.ok("chat", {"messages": MSGS, "template": "chatml", "max_tokens": 1})
            check(r["n_prompt"] > 5, "a template given works")
        finally:
            d.cleanup()
    # the config key overrides what the model has
    d = Daemon(model=ODD_MODEL, conf_extra="chat_template: chatml\n")
    try:
        c = d.client()
        check(c.ok("info")["model"]["chat_template"] == "chatml", "config template in info")
        r = c.ok("chat", {"messages": MSGS, "max_tokens": 8})
        check(r["tokens"] == [A] and r["stop_reason"] == "eos", "chatml from the config: %r" % r)
    finally:
        d.cleanup()
    d = Daemon(model=ODD_MODEL, conf_extra="chat_template: chatmlx\n", start=False)
    try:
        d.start(wait=False)
        rc = d.proc.wait(30)
        check(rc != 0 and "unknown template 'chatmlx'" in d.log_text(),
              "a bad chat_template fails at load: %d %s" % (rc, d.log_text()))
    finally:
        d.cleanup()


try:
    run([
        ("info", t_info),
        ("parse_special_tokenize", t_parse_special_tokenize),
        ("parse_special_complete_trace", t_parse_special_complete_trace),
        ("eog_stop_complete", t_eog_stop_complete),
        ("chat", t_chat),
        ("chat_stream", t_chat_stream),
        ("chat_template_param", t_chat_template_param),
        ("chat_malformed", t_chat_malformed),
        ("no_or_odd_template", t_no_or_odd_template),
    ])
finally:
    D.cleanup()
    shutil.rmtree(TMP, ignore_errors=True)
