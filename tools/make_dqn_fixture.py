"""tools/make_dqn_fixture.py - one DQN gradient step computed by PyTorch, for tests/test_rl_dqn.c.

The network (4 -> 8 relu -> 3), its weights, the target network's weights and six transitions
are given by formulas that tests/test_rl_dqn.c repeats. For each case (loss, Double DQN or not,
gradient clipping) the script does what CleanRL's dqn.py does on a batch:
    y = r + gamma * (1 - terminated) * Q_target(s', a*)    (a* from Q_target, or Q_online if double)
    loss = mse or huber(Q_online(s, a), y); backward; clip_grad_norm_; Adam step
and writes the loss and the updated weights, kernels in dl's [in, out] layout.
Usage: /usr/bin/python3 tools/make_dqn_fixture.py > tests/data/rl_dqn_update.txt
"""
import math
import torch

torch.set_default_dtype(torch.float32)
IN, HID, OUT, B = 4, 8, 3, 6
GAMMA = 0.9


def weights(scale, phase):
    w1 = torch.tensor([[scale * math.sin(0.7 * i + 1.3 * j + phase) for j in range(HID)] for i in range(IN)])
    b1 = torch.tensor([0.05 * math.cos(j + phase) for j in range(HID)])
    w2 = torch.tensor([[scale * math.cos(0.9 * i - 0.4 * j + phase) for j in range(OUT)] for i in range(HID)])
    b2 = torch.tensor([0.1 * math.sin(2.0 * j + phase) for j in range(OUT)])
    return [w1, b1, w2, b2]   # kernels [in, out], as dl stores them


def forward(ws, x):
    h = torch.relu(x @ ws[0] + ws[1])
    return h @ ws[2] + ws[3]


obs = torch.tensor([[math.sin(1.1 * b + 0.3 * k) for k in range(IN)] for b in range(B)])
nxt = torch.tensor([[math.cos(0.8 * b - 0.5 * k) for k in range(IN)] for b in range(B)])
act = torch.tensor([b % OUT for b in range(B)])
rew = torch.tensor([0.5 * b - 1.0 for b in range(B)])
term = torch.tensor([1.0 if b % 4 == 3 else 0.0 for b in range(B)])

for loss_kind, double, clip in (("mse", 0, 0.0), ("huber", 1, 0.0), ("mse", 1, 0.05), ("huber", 0, 0.05)):
    online = [w.clone().requires_grad_(True) for w in weights(0.4, 0.0)]
    target = weights(0.3, 0.5)
    opt = torch.optim.Adam(online, lr=0.01, eps=1e-8)
    with torch.no_grad():
        qt = forward(target, nxt)
        best = forward(online, nxt).argmax(1) if double else qt.argmax(1)
        y = rew + GAMMA * qt.gather(1, best[:, None]).squeeze(1) * (1 - term)
    qa = forward(online, obs).gather(1, act[:, None]).squeeze(1)
    loss = torch.nn.functional.mse_loss(qa, y) if loss_kind == "mse" else torch.nn.functional.huber_loss(qa, y, delta=1.0)
    opt.zero_grad()
    loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(online, clip)
    opt.step()
    print("case", loss_kind, double, clip, "loss %.9g" % loss.item())
    for w in online:
        print(" ".join("%.9g" % v for v in w.detach().flatten().tolist()))
