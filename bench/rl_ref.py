"""bench/rl_ref.py - the reference numbers for bench/rl.c: Gymnasium's CartPole-v1 and MinAtar's
Breakout steps per second, and PyTorch's batch-1 forward latency of the same two networks.

    python3 bench/rl_ref.py [--part gym|minatar|torch|all] [--seconds S] [--reps R] [--calls N] [--updates U]

Each part needs its package (gymnasium and numpy; minatar and numpy; torch); a part whose
package is missing prints a "# skipped" line instead. bench/rl.sh runs each part with the first
interpreter that has its package (here: gym and minatar with the pyenv python3, torch with
/usr/bin/python3).

Environments: random actions from a fixed table of 4096 (cycled, as bench/rl.c), resets included.
  gym    CartPole-v1 through gymnasium.make (TimeLimit, OrderEnforcing, PassiveEnvChecker
         wrappers), and the raw CartPoleEnv (env.unwrapped; the 500-step limit kept by counting
         steps in the loop)
  minatar Breakout (sticky actions 0.1, the default), random actions from its minimal action
         set, env.state() read after every step (the observation an agent would use)
steps_per_s is the median of R runs (default 5) of about S seconds (default 0.5).

torch: the networks of bench/rl.c (CartPole MLP 4-120-84-2; Breakout Conv2d(4, 16, 3) ReLU,
Flatten, Linear(1024, 128) ReLU, Linear(128, 3)), untrained, under torch.no_grad(); one call is
net(x).argmax(1).item() on a [1, ...] float tensor made beforehand (256 observations, cycled),
as dl_dqn_act returns the greedy action; timed alone with time.perf_counter after 200 untimed
calls; median and p99 over N calls (default 5000), at torch.set_num_threads(1) and, when larger,
at torch's default thread count (torch 1.13 here defaults to 1 thread on 2 CPUs; forcing 2 made
the Breakout net's forward take about 8 ms on this busy 2-core machine, OpenMP spinning).

Output lines (key=value), as bench/rl.c's:
    gym env=CartPole-v1 wrappers=make steps_per_s=... reps=5
    gym env=CartPole-v1 wrappers=none steps_per_s=... reps=5
    minatar env=Breakout steps_per_s=... reps=5
    torch net=cartpole threads=1 batch=1 forward_us_median=... forward_us_p99=... calls=5000
    torch net=cartpole threads=1 batch=128 update_ms_median=... updates=300

update (part torch): one DQN gradient step as CleanRL writes it, with the settings of bench/rl.c
(cartpole: batch 128, MSE, Adam(2.5e-4); breakout: batch 32, smooth L1 (= Huber with delta 1),
RMSprop(2.5e-4, alpha 0.95, eps 0.01, centered)): indices drawn with torch.randint from a buffer
of 2000 transitions held as tensors, the target network's max under no_grad, gather, loss,
zero_grad, backward, step; median over U updates (default 300) after 20 untimed ones, at
torch.set_num_threads(1).
"""
import argparse
import math
import statistics
import time

N_TABLE = 4096


def rate(run_for, seconds, reps):
    rates = []
    for _ in range(reps):
        steps, t = run_for(seconds)
        rates.append(steps / t)
    return statistics.median(rates)


def bench_gym(seconds, reps):
    try:
        import gymnasium
        import numpy as np
    except ImportError as e:
        print(f"# skipped gym: {e}")
        return
    rng = np.random.default_rng(7)
    actions = rng.integers(0, 2, N_TABLE).tolist()

    env = gymnasium.make("CartPole-v1")
    env.reset(seed=1)

    def run_make(seconds):
        steps, k, t0 = 0, 0, time.perf_counter()
        while True:
            for _ in range(1000):
                _, _, term, trunc, _ = env.step(actions[k % N_TABLE])
                k += 1
                if term or trunc:
                    env.reset()
            steps += 1000
            t = time.perf_counter() - t0
            if t >= seconds:
                return steps, t

    print(f"gym env=CartPole-v1 wrappers=make steps_per_s={rate(run_make, seconds, reps):.0f} reps={reps}"
          f" gymnasium={gymnasium.__version__}", flush=True)

    raw = gymnasium.make("CartPole-v1").unwrapped
    raw.reset(seed=1)

    def run_raw(seconds):
        steps, k, n, t0 = 0, 0, 0, time.perf_counter()
        while True:
            for _ in range(1000):
                _, _, term, _, _ = raw.step(actions[k % N_TABLE])
                k += 1
                n += 1
                if term or n >= 500:
                    raw.reset()
                    n = 0
            steps += 1000
            t = time.perf_counter() - t0
            if t >= seconds:
                return steps, t

    print(f"gym env=CartPole-v1 wrappers=none steps_per_s={rate(run_raw, seconds, reps):.0f} reps={reps}", flush=True)


def bench_minatar(seconds, reps):
    try:
        from minatar import Environment
        import numpy as np
    except ImportError as e:
        print(f"# skipped minatar: {e}")
        return
    env = Environment("breakout", sticky_action_prob=0.1)
    env.seed(1)
    env.reset()
    acts = env.minimal_action_set()
    rng = np.random.default_rng(7)
    actions = [acts[i] for i in rng.integers(0, len(acts), N_TABLE).tolist()]

    def run(seconds):
        steps, k, t0 = 0, 0, time.perf_counter()
        while True:
            for _ in range(1000):
                _, done = env.act(actions[k % N_TABLE])
                env.state()
                k += 1
                if done:
                    env.reset()
            steps += 1000
            t = time.perf_counter() - t0
            if t >= seconds:
                return steps, t

    print(f"minatar env=Breakout steps_per_s={rate(run, seconds, reps):.0f} reps={reps}", flush=True)


def make_net(name):
    """The networks of bench/rl.c: CartPole's MLP, MinAtar's Breakout network."""
    from torch import nn
    if name == "cartpole":
        return nn.Sequential(nn.Linear(4, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 2))
    return nn.Sequential(nn.Conv2d(4, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, 128), nn.ReLU(),
                         nn.Linear(128, 3))


def bench_torch(calls):
    try:
        import torch
    except ImportError as e:
        print(f"# skipped torch: {e}")
        return
    torch.manual_seed(1)
    nets = {
        "cartpole": (make_net("cartpole"), lambda g: torch.rand((1, 4), generator=g) * 0.1 - 0.05),
        "breakout": (make_net("breakout"), lambda g: (torch.rand((1, 4, 10, 10), generator=g) < 0.1).float()),
    }
    default_threads = torch.get_num_threads()
    for name, (net, make_obs) in nets.items():
        net.eval()
        g = torch.Generator().manual_seed(3)
        obs = [make_obs(g) for _ in range(256)]
        for threads in sorted({1, default_threads}):
            torch.set_num_threads(threads)
            us = []
            with torch.no_grad():
                for i in range(200):
                    net(obs[i % 256]).argmax(1).item()
                for i in range(calls):
                    x = obs[i % 256]
                    t = time.perf_counter()
                    net(x).argmax(1).item()
                    us.append(1e6 * (time.perf_counter() - t))
            us.sort()
            p99 = us[max(0, math.ceil(0.99 * calls) - 1)]
            print(f"torch net={name} threads={threads} batch=1 forward_us_median={statistics.median(us):.2f} "
                  f"forward_us_p99={p99:.2f} calls={calls} torch={torch.__version__}", flush=True)
    torch.set_num_threads(default_threads)


def bench_torch_update(updates):
    try:
        import copy
        import torch
        from torch import nn
    except ImportError as e:
        print(f"# skipped torch update: {e}")
        return
    torch.manual_seed(1)
    torch.set_num_threads(1)
    cases = {
        "cartpole": (make_net("cartpole"), (4,), 2, 128, "mse"),
        "breakout": (make_net("breakout"), (4, 10, 10), 3, 32, "huber"),
    }
    for name, (net, shape, n_actions, batch, loss_kind) in cases.items():
        target = copy.deepcopy(net)
        if loss_kind == "mse":
            opt = torch.optim.Adam(net.parameters(), lr=2.5e-4)
        else:
            opt = torch.optim.RMSprop(net.parameters(), lr=2.5e-4, alpha=0.95, eps=0.01, centered=True)
        n = 2000
        obs = (torch.rand((n,) + shape) < 0.1).float() if name == "breakout" else torch.rand((n,) + shape) * 0.1
        nxt = torch.roll(obs, -1, 0)
        act = torch.randint(0, n_actions, (n,))
        rew = torch.rand(n)
        done = (torch.arange(n) % 50 == 49).float()

        def step():
            idx = torch.randint(0, n, (batch,))
            with torch.no_grad():
                y = rew[idx] + 0.99 * target(nxt[idx]).max(1).values * (1 - done[idx])
            q = net(obs[idx]).gather(1, act[idx][:, None]).squeeze(1)
            loss = nn.functional.mse_loss(q, y) if loss_kind == "mse" else nn.functional.smooth_l1_loss(q, y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        for _ in range(20):
            step()
        ms = []
        for _ in range(updates):
            t = time.perf_counter()
            step()
            ms.append(1e3 * (time.perf_counter() - t))
        print(f"torch net={name} threads=1 batch={batch} update_ms_median={statistics.median(ms):.3f} updates={updates}",
              flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--part", choices=["gym", "minatar", "torch", "all"], default="all")
    p.add_argument("--seconds", type=float, default=0.5)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--calls", type=int, default=5000)
    p.add_argument("--updates", type=int, default=300)
    a = p.parse_args()
    if a.part in ("gym", "all"):
        bench_gym(a.seconds, a.reps)
    if a.part in ("minatar", "all"):
        bench_minatar(a.seconds, a.reps)
    if a.part in ("torch", "all"):
        bench_torch(a.calls)
        bench_torch_update(a.updates)


if __name__ == "__main__":
    main()
