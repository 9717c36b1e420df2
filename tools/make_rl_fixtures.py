#!/usr/bin/env python3
"""Writes tests/data/rl_cartpole.txt (Gymnasium's CartPole-v1 dynamics),
tests/data/rl_mountaincar.txt (MountainCar-v0's), tests/data/rl_frozenlake.txt
(FrozenLake-v1's transition tables) and tests/data/rl_breakout.txt (MinAtar's Breakout) for
tests/test_rl.c (run from the repository root with a Python that has gymnasium and minatar;
made with gymnasium 1.4.0, numpy 2.4, minatar 1.0.15).

One line per step, all numbers as the hex of their IEEE-754 bits, so that the test can demand
the same bits:
    s0 s1 s2 s3  action  n0 n1 n2 n3  o0 o1 o2 o3  terminated
s = the float64 state before the step (x, x_dot, theta, theta_dot; 16 hex digits each), action
0 or 1, n = the float64 state after it (env.unwrapped.state), o = the float32 observation that
step() returned (8 hex digits each), terminated 0 or 1. Lines starting with '#' are comments.
The steps come from
  - 12 episodes reset with seeds 0..11, random actions (numpy default_rng(1000 + seed)),
    until termination;
  - one episode (seed 42) under the policy "push toward the side the pole leans to"
    (action = theta + theta_dot > 0), which lasts the full 500 steps;
  - 200 states set explicitly (uniform over x in [-2.4, 2.4], x_dot in [-3, 3], theta in
    [-0.2, 0.2], theta_dot in [-3, 3] from default_rng(7)), one step each with a random action.
Each env's TimeLimit is bypassed by stepping env.unwrapped (truncation is tested in C).

rl_mountaincar.txt: MountainCar-v0 (gym.make, so with its 200-step TimeLimit), one line per step:
    s0 s1  t  action  n0 n1  o0 o1  terminated truncated
s = the float64 state (position, velocity) before the step, t = the steps taken since reset
before this one, n = the state after it, o = the float32 observation returned. The steps come
from
  - 8 episodes reset with seeds 0..7, random actions (numpy default_rng(2000 + seed)), until
    termination or truncation (random actions do not reach the goal: truncated at 200);
  - 4 episodes (seeds 10..13) under the energy-pumping policy "push the way the car moves"
    (action 2 if velocity >= 0 else 0), which reach the goal (terminated);
  - 300 states set explicitly with t = 0, one step each with a random action (default_rng(8)):
    100 uniform over position in [-1.2, 0.6], velocity in [-0.07, 0.07]; 100 at the left wall
    (position within 0.02 of -1.2 or exactly -1.2, velocity in [-0.07, 0.01]); 100 near the
    goal (position in [0.45, 0.55] or exactly 0.5, velocity in [-0.005, 0.005] or exactly 0).

rl_frozenlake.txt: for the maps "4x4" and "8x8", slippery and not, a line "map M slippery K"
then one line per transition of env.unwrapped.P in order of (state, action, list position):
    s a prob next reward terminated      (prob as the hex bits of its float64)

rl_breakout.txt: MinAtar's Breakout (minatar 1.0.15, its breakout.Env driven directly, so no
sticky actions and no random numbers after reset), one line per step:
    x y dir lx ly pos strike bricks  action  reward terminal  x y dir lx ly pos strike bricks
the game state before the step (ball x, y, direction, trail x, y, paddle x, strike flag, and
the bricks as a hex bit mask: bit (row - 1) * 10 + column), the action of dl's minimal set (0
no-op, 1 left, 2 right; MinAtar's 0, 1, 3), and the state after it. The steps come from
  - 150 episodes with random actions (numpy default_rng(3000 + episode));
  - 3 episodes of 1000 steps of a random safe action: actions are tried in a random order
    (default_rng(4000 + episode)) and the first one after which "move under the ball's next
    column" survives 12 more steps (simulated on a copy) is taken; these clear every brick and
    see the wall refilled;
  - 1000 states set explicitly (default_rng(9): ball anywhere above the paddle row, any
    direction, paddle anywhere, strike flag either way, bricks present with probability 0.6),
    one step each with a random action.
"""
import copy
import struct

import gymnasium as gym
import numpy as np


def h64(v):
    return "%016x" % struct.unpack("<Q", struct.pack("<d", float(v)))[0]


def h32(v):
    return "%08x" % struct.unpack("<I", struct.pack("<f", np.float32(v)))[0]


def step_line(env, action):
    u = env.unwrapped
    before = [float(v) for v in u.state]
    obs, reward, terminated, truncated, _ = u.step(int(action))
    assert reward == 1.0 and not truncated
    after = [float(v) for v in u.state]
    line = " ".join([h64(v) for v in before] + [str(int(action))] + [h64(v) for v in after] +
                    [h32(v) for v in obs] + [str(int(terminated))])
    return line, obs, terminated


def mountaincar_elapsed(env):
    e = env
    while e is not None:
        if hasattr(e, "_elapsed_steps"):
            return e._elapsed_steps
        e = getattr(e, "env", None)
    raise RuntimeError("no TimeLimit wrapper")


def mountaincar(path):
    lines = ["# MountainCar-v0 steps from gymnasium %s, numpy %s (see tools/make_rl_fixtures.py)"
             % (gym.__version__, np.__version__)]
    env = gym.make("MountainCar-v0")
    n_term = n_trunc = 0

    def step(action, t=None):
        nonlocal n_term, n_trunc
        u = env.unwrapped
        before = [float(v) for v in u.state]
        if t is None:
            t = mountaincar_elapsed(env)
        obs, reward, terminated, truncated, _ = env.step(int(action))
        assert reward == -1.0
        after = [float(v) for v in u.state]
        n_term += bool(terminated)
        n_trunc += bool(truncated)
        lines.append(" ".join([h64(v) for v in before] + [str(t), str(int(action))] + [h64(v) for v in after] +
                              [h32(v) for v in obs] + [str(int(terminated)), str(int(truncated))]))
        return obs, terminated or truncated

    for seed in range(8):
        env.reset(seed=seed)
        rng = np.random.default_rng(2000 + seed)
        done = False
        while not done:
            _, done = step(rng.integers(3))
    for seed in range(10, 14):
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            obs, done = step(2 if obs[1] >= 0 else 0)
    rng = np.random.default_rng(8)
    for k in range(300):
        env.reset(seed=0)
        if k < 100:
            st = [rng.uniform(-1.2, 0.6), rng.uniform(-0.07, 0.07)]
        elif k < 200:
            st = [-1.2 if k % 4 == 0 else rng.uniform(-1.2, -1.18), rng.uniform(-0.07, 0.01)]
        else:
            st = [0.5 if k % 4 == 0 else rng.uniform(0.45, 0.55),
                  0.0 if k % 5 == 0 else rng.uniform(-0.005, 0.005)]
        env.unwrapped.state = np.array(st, dtype=np.float64)
        step(rng.integers(3), t=0)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s: %d steps, %d terminated, %d truncated" % (path, len(lines) - 1, n_term, n_trunc))


def breakout(path):
    from minatar.environments import breakout as mb
    env = mb.Env()
    to_minatar = [0, 1, 3]

    def get():
        bricks = 0
        for y in range(1, 4):
            for x in range(10):
                if env.brick_map[y, x]:
                    bricks |= 1 << ((y - 1) * 10 + x)
        assert int(np.count_nonzero(env.brick_map[[0, 4, 5, 6, 7, 8, 9], :])) == 0
        return "%d %d %d %d %d %d %d %08x" % (env.ball_x, env.ball_y, env.ball_dir, env.last_x, env.last_y,
                                              env.pos, int(env.strike), bricks)

    lines = ["# MinAtar Breakout steps from minatar 1.0.15 (see tools/make_rl_fixtures.py)"]
    counts = {"terminal": 0, "reward": 0, "refill": 0}

    def step(a):
        before = get()
        empty = int(np.count_nonzero(env.brick_map)) == 0
        r, term = env.act(to_minatar[a])
        after = get()
        counts["terminal"] += int(term)
        counts["reward"] += int(r)
        counts["refill"] += int(empty and int(np.count_nonzero(env.brick_map)) == 30)
        lines.append("%s %d %d %d %s" % (before, a, int(r), int(term), after))
        return term

    for ep in range(150):
        env.random = np.random.RandomState(ep)
        env.reset()
        rng = np.random.default_rng(3000 + ep)
        while not step(int(rng.integers(3))):
            pass
    def follow(e):
        target = min(9, max(0, e.ball_x + (1 if e.ball_dir in (1, 2) else -1)))
        return 2 if e.pos < target else 1 if e.pos > target else 0

    def survives(a):
        e = copy.deepcopy(env)
        _, term = e.act(to_minatar[a])
        for _ in range(12):
            if term:
                return False
            _, term = e.act(to_minatar[follow(e)])
        return not term

    for ep in range(3):
        env.random = np.random.RandomState(100 + ep)
        env.reset()
        rng = np.random.default_rng(4000 + ep)
        for _ in range(1000):
            a = follow(env)
            for c in rng.permutation(3):
                if survives(int(c)):
                    a = int(c)
                    break
            if step(a):
                break
    rng = np.random.default_rng(9)
    for _ in range(1000):
        env.reset()
        env.ball_x, env.ball_y = int(rng.integers(10)), int(rng.integers(9))
        env.ball_dir = int(rng.integers(4))
        env.last_x, env.last_y = int(rng.integers(10)), int(rng.integers(10))
        env.pos = int(rng.integers(10))
        env.strike = bool(rng.integers(2))
        env.brick_map[1:4, :] = (rng.random((3, 10)) < 0.6).astype(float)
        step(int(rng.integers(3)))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s: %d steps, %d terminated, %d bricks hit, %d refills" % (path, len(lines) - 1, counts["terminal"],
                                                                           counts["reward"], counts["refill"]))


def main():
    lines = ["# CartPole-v1 steps from gymnasium %s, numpy %s (see tools/make_rl_fixtures.py)"
             % (gym.__version__, np.__version__)]
    env = gym.make("CartPole-v1")
    for seed in range(12):
        env.reset(seed=seed)
        rng = np.random.default_rng(1000 + seed)
        terminated = False
        while not terminated:
            line, _, terminated = step_line(env, rng.integers(2))
            lines.append(line)
    obs, _ = env.reset(seed=42)
    for _ in range(500):
        line, obs, terminated = step_line(env, int(obs[2] + obs[3] > 0))
        lines.append(line)
        if terminated:
            break
    rng = np.random.default_rng(7)
    lo = np.array([-2.4, -3.0, -0.2, -3.0])
    for _ in range(200):
        env.reset(seed=0)
        env.unwrapped.state = rng.uniform(lo, -lo)
        line, _, _ = step_line(env, rng.integers(2))
        lines.append(line)
    with open("tests/data/rl_cartpole.txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote tests/data/rl_cartpole.txt: %d steps" % (len(lines) - 1))

    mountaincar("tests/data/rl_mountaincar.txt")
    breakout("tests/data/rl_breakout.txt")

    lines = ["# FrozenLake-v1 env.unwrapped.P from gymnasium %s (see tools/make_rl_fixtures.py)"
             % gym.__version__]
    for name in ("4x4", "8x8"):
        for slippery in (1, 0):
            u = gym.make("FrozenLake-v1", map_name=name, is_slippery=bool(slippery)).unwrapped
            lines.append("map %s slippery %d" % (name[0], slippery))
            for s in range(u.observation_space.n):
                for a in range(4):
                    for prob, nxt, reward, term in u.P[s][a]:
                        lines.append("%d %d %s %d %d %d" % (s, a, h64(prob), nxt, int(reward), int(term)))
    with open("tests/data/rl_frozenlake.txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote tests/data/rl_frozenlake.txt: %d lines" % len(lines))


if __name__ == "__main__":
    main()
