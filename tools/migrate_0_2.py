#!/usr/bin/env python3
"""tools/migrate_0_2.py - rewrite C sources written for dl 0.1 to the names of dl 0.2.

    python3 tools/migrate_0_2.py [--renames-only] [--skip NAME]... FILE...
                                  (rewrites the files in place; prints what changed)
Run it once on a file: moving arguments twice moves them back out of order.

What it does mechanically, word for word (CHANGELOG.md, section 0.2.0, lists every item):
  - renames functions and enum constants (RENAMES below);
  - moves arguments where 0.2 changed their order (MOVES below): the dl_rng * goes last among
    the inputs of the fill/init functions, outputs go last.
What it cannot do, and the compiler then points at:
  - the optimizer constructors: dl_adam(lr, b1, b2, eps) is dl_adam(lr) or dl_optim_new(DL_OPTIM_ADAM,
    &opts) with an options struct; 4-argument calls fail to compile, so none is missed;
  - dl_gradcheck returns 0 when the gradients agree (it returned 1): `if (dl_gradcheck(...))` must
    become `if (dl_gradcheck(...) == 0)`; the script prints every call so you can check each;
  - dl_rl.h's options: zero now means default (dl_dqn_defaults() and dl_td_defaults() are gone).
"""
import re
import sys

RENAMES = {
    # dl_tensor.h: enum constants carry their type's name
    "DL_F32": "DL_DTYPE_F32", "DL_I32": "DL_DTYPE_I32", "DL_U8": "DL_DTYPE_U8",
    "DL_CPU": "DL_DEVICE_CPU", "DL_CUDA": "DL_DEVICE_CUDA",
    # counts are dl_<object>_num_<things>; getters have no get_
    "dl_safetensors_count": "dl_safetensors_num_tensors",
    "dl_safetensors_meta_count": "dl_safetensors_num_meta",
    "dl_get_num_threads": "dl_num_threads",
    # dl_optim.h
    "dl_optim_get_kind": "dl_optim_type",
    "dl_optim_param_count": "dl_optim_num_params",
    # dl_nn.h: activations and padding
    "DL_LINEAR": "DL_ACT_LINEAR", "DL_RELU": "DL_ACT_RELU", "DL_SIGMOID": "DL_ACT_SIGMOID",
    "DL_TANH": "DL_ACT_TANH", "DL_SOFTMAX": "DL_ACT_SOFTMAX", "DL_GELU": "DL_ACT_GELU",
    "DL_ELU": "DL_ACT_ELU", "DL_LEAKY_RELU": "DL_ACT_LEAKY_RELU", "DL_SOFTPLUS": "DL_ACT_SOFTPLUS",
    "DL_VALID": "DL_PADDING_VALID", "DL_SAME": "DL_PADDING_SAME",
    # dl_nn.h: object first, then the verb
    "dl_load_idx": "dl_idx_load", "dl_parse_idx": "dl_idx_parse",
    "dl_load_csv": "dl_csv_load", "dl_parse_csv": "dl_csv_parse",
    "dl_load_fashion_mnist": "dl_fashion_mnist_load",
    "dl_load_image_folder": "dl_image_folder_load",
    "dl_model_count_params": "dl_model_num_params",
    "dl_model_get_layer": "dl_model_find_layer",
    "dl_batcher_len": "dl_batcher_num_batches",
    # dl_rl.h
    "dl_write_ppm": "dl_ppm_save",
    "dl_env_get_state": "dl_env_state",
    "DL_Q_LEARNING": "DL_TD_Q_LEARNING", "DL_SARSA": "DL_TD_SARSA",
    "DL_EXPECTED_SARSA": "DL_TD_EXPECTED_SARSA",
    "DL_DQN_MSE": "DL_DQN_LOSS_MSE", "DL_DQN_HUBER": "DL_DQN_LOSS_HUBER",
}

# name: (number of arguments, the new order as old positions)
MOVES = {
    "dl_fill_uniform": (4, [0, 2, 3, 1]),           # (t, rng, lo, hi) -> (t, lo, hi, rng)
    "dl_fill_normal": (4, [0, 2, 3, 1]),
    "dl_fill_truncated_normal": (4, [0, 2, 3, 1]),
    "dl_fill_bernoulli": (3, [0, 2, 1]),            # (t, rng, p) -> (t, p, rng)
    "dl_init_glorot_uniform": (4, [0, 2, 3, 1]),    # (t, rng, fan_in, fan_out) -> (t, fan_in, fan_out, rng)
    "dl_init_glorot_normal": (4, [0, 2, 3, 1]),
    "dl_init_he_uniform": (3, [0, 2, 1]),           # (t, rng, fan_in) -> (t, fan_in, rng)
    "dl_init_he_normal": (3, [0, 2, 1]),
    "dl_rng_permutation": (3, [0, 2, 1]),           # (rng, out, n) -> (rng, n, out)
    "dl_policy_iteration": (5, [0, 1, 2, 4, 3]),    # (m, gamma, theta, policy, V) -> (..., V, policy)
    "dl_dqn_save": (3, [0, 2, 1]),                  # (agent, env, path) -> (agent, path, env)
}

WORD = re.compile(r"\b(" + "|".join(sorted(RENAMES, key=len, reverse=True)) + r")\b")


def split_args(text, start):
    """Arguments of the call whose '(' is at text[start]; returns (list, index after ')')."""
    depth, i, args, cur = 0, start, [], start + 1
    in_str = None
    while i < len(text):
        c = text[i]
        if in_str:
            if c == "\\":
                i += 1
            elif c == in_str:
                in_str = None
        elif c in "\"'":
            in_str = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                args.append(text[cur:i])
                return args, i + 1
        elif c == "," and depth == 1:
            args.append(text[cur:i])
            cur = i + 1
        i += 1
    return None, start


def move_args(text):
    out, pos = [], 0
    if not MOVES:
        return text
    pat = re.compile(r"\b(" + "|".join(MOVES) + r")\s*\(")
    while True:
        m = pat.search(text, pos)
        if not m:
            out.append(text[pos:])
            return "".join(out)
        name = m.group(1)
        paren = m.end() - 1
        args, end = split_args(text, paren)
        n, order = MOVES[name]
        # Declarations/definitions (typed parameters) are left alone: only calls move.
        if args is None or len(args) != n or re.match(r"\s*(const\s+)?(dl_\w+|float|int|double)\s*\*?\s*\w+\s*$", args[0]):
            out.append(text[pos:m.end()])
            pos = m.end()
            continue
        lead = [re.match(r"\s*", a).group(0) for a in args]
        core = [a.strip() for a in args]
        new = [lead[i] + core[order[i]] for i in range(n)]
        out.append(text[pos:paren] + "(" + ",".join(new) + ")")
        pos = end


def main(args):
    paths = []
    while args:
        a = args.pop(0)
        if a == "--renames-only":       # only the renames (for sources already reordered)
            MOVES.clear()
        elif a == "--skip":             # --skip NAME: leave NAME's calls and name alone
            name = args.pop(0)
            MOVES.pop(name, None)
            RENAMES.pop(name, None)
        else:
            paths.append(a)
    global WORD
    WORD = re.compile(r"\b(" + "|".join(sorted(RENAMES, key=len, reverse=True)) + r")\b")
    for p in paths:
        with open(p, encoding="utf-8") as f:
            old = f.read()
        new = move_args(WORD.sub(lambda m: RENAMES[m.group(1)], old))
        if new != old:
            with open(p, "w", encoding="utf-8") as f:
                f.write(new)
            print("rewrote", p)
        for i, line in enumerate(new.splitlines(), 1):
            if "dl_gradcheck(" in line and "DLDEF" not in line:
                print(f"{p}:{i}: check: dl_gradcheck returns 0 on success now: {line.strip()}")


if __name__ == "__main__":
    main(sys.argv[1:])
