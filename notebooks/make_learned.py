"""Writes notebooks/learned_optimizer.ipynb (kept as code so that diffs stay readable)."""

from pathlib import Path

import nbformat as nbf

# The transfer rows as benchmarks/learned_table.py measured them (a stored result: meta-training
# the three nets on digits with the reference's MNIST budget takes an hour on this CPU). Per
# method: (mean, CI low, CI high) of F at step 100 on the sigmoid and on the ReLU MLP, over 5
# test seeds of 20 MLPs each; meta-training seed 0 (its learned_table_transfer_seeds0-0.json).
TRANSFER = {
    "budget": (
        "stored result of benchmarks/learned_table.py --part transfer --transfer-iterations "
        "1000 --transfer-problems 20: meta-training seed 0, the reference's MNIST budget of "
        "1000 iterations, model selection every 20 on 20 fresh MLPs; F at step 100 over 5 "
        "test seeds x 20 MLPs; meta-training 1136 s (pH cell), 789 s (original), 1714 s "
        "(LSTM) on a shared 2-core CPU"
    ),
    "rows": {
        "hnn": ((0.0913, 0.0797, 0.103), (0.3243, 0.3038, 0.3448)),
        "hnn_original": ((0.1034, 0.0971, 0.1098), (0.4078, 0.3026, 0.513)),
        "lstm": ((0.0028, 0.0019, 0.0038), (0.0714, 0.045, 0.0978)),
        "sgd": ((0.0447, 0.0427, 0.0468), (0.0361, 0.0305, 0.0418)),
        "nag": ((0.041, 0.0381, 0.044), (0.0259, 0.0219, 0.03)),
        "adam": ((0.1073, 0.0971, 0.1174), (0.047, 0.0404, 0.0537)),
        "rmsprop": ((0.2185, 0.2054, 0.2315), (0.2741, 0.2535, 0.2948)),
    },
}

cells = [
    nbf.v4.new_markdown_cell(
        "# A learned port-Hamiltonian optimizer\n\n"
        "Timofeev, Afonin & Liu (seed 002; ALGORITHMS.md §4): every parameter entry runs a "
        "tiny pH cell whose coordinate q is the gradient and whose momentum p is the "
        "optimizer's last output,\n\n"
        "q̇ = M⁻¹p − D_q,  ṗ = −V(q) − D_p + G(q),  [D_q; D_p] = D·[V(q); M⁻¹p],\n\n"
        "and the step is θ ← θ + out_mul·B[q̇; q]. V, G are 1→1→1 ReLU nets, M⁻¹ = LᵀL and — "
        "odeopt's change to the original — D = KKᵀ acts on ∇H, which makes the cell a "
        "port-Hamiltonian system with a provable balance. `HNNOptimizerNet(constrained=False)` "
        "is the authors' cell (D unconstrained, on [V(q); p]); `LSTMOptimizerNet` is the "
        "learning-to-learn baseline (Andrychowicz et al. 2016) the paper compares with."
    ),
    nbf.v4.new_code_cell(
        "# Sizes (papermill-style parameters: the test suite runs this notebook with smaller\n"
        "# ones, see tests/test_notebooks.py). Table A1 runs the reference's protocol in full\n"
        "# (100 problems x 5 test seeds take seconds); SPREAD_SEEDS independent 100-problem draws\n"
        "# measure the reference's unpaired noise; the digits run is a short meta-training.\n"
        "TEST_SEEDS, PROBLEMS = 5, 100\n"
        "SPREAD_SEEDS = 40\n"
        "DIGITS_ITERATIONS, DIGITS_PROBLEMS, DIGITS_VALIDATE_EVERY = 12, 8, 4\n"
        "DIGITS_TEST_PROBLEMS, DIGITS_TEST_SEEDS = 20, 3",
        metadata={"tags": ["parameters"]},
    ),
    nbf.v4.new_code_cell(
        "import copy\n"
        "import time\n"
        "import matplotlib.pyplot as plt\n"
        "import numpy as np\n"
        "import torch\n"
        "from odeopt import learned, plot\n\n"
        "torch.set_num_threads(1)\n"
        "torch.manual_seed(0)\n"
        "net = learned.HNNOptimizerNet()\n"
        "print(sum(p.numel() for p in net.parameters()), 'parameters')\n"
        "cell = net.cell.to_system()\n"
        "print(cell)\n"
        "print(cell.energy_balance())"
    ),
    nbf.v4.new_markdown_cell(
        "## Table A1: the quadratic task on the reference's protocol\n\n"
        "F(θ) = |Wθ − y|², W ∈ ℝ^{10×10} and y Gaussian, θ₀ = 0. `meta_train`'s defaults are "
        "the reference's loop (OPT-ML `training.py`): 2000 iterations of one optimizee, 100 "
        "steps, Adam after each complete window of 15 (HNN) / 20 (LSTM) steps (the HNN's "
        "steps 91–100 run but not trained on), model selection at the end of each "
        "20-iteration epoch on 50 fresh problems. `benchmarks/learned_table.py` ran it for "
        "meta-training seeds 0–4; "
        "the shipped checkpoints (`learned.pretrained`) are, per net, the seed that scored "
        "best on held-out problems (test seeds 100–104, not the ones reported here). "
        "`learned.evaluate` reports F at step 100 (the reference's counting, F(θ₉₉)), the "
        "mean over 100 fresh problems per test seed, and a Student-t 95 % interval over the "
        "test seeds; the baselines run with the reference's settings (SGD and NAG: lr 0.01, "
        "momentum 0.9, NAG with `nesterov=True`; Adam 0.1; RMSprop 0.03)."
    ),
    nbf.v4.new_code_cell(
        "task = learned.QuadraticTask()\n"
        "rows = {\n"
        "    'HNN, pH cell (odeopt)': 'hnn_quadratic',\n"
        "    'HNN, original cell': 'hnn_quadratic_original',\n"
        "    'LSTM (L2L)': 'lstm_quadratic',\n"
        "    'SGD (0.01, m 0.9)': 'sgd', 'NAG (0.01, m 0.9)': 'nag',\n"
        "    'Adam (0.1)': 'adam', 'RMSprop (0.03)': 'rmsprop',\n"
        "}\n"
        "reference = {'HNN, pH cell (odeopt)': None, 'HNN, original cell': 0.23,\n"
        "             'LSTM (L2L)': 0.25, 'SGD (0.01, m 0.9)': 0.33, 'NAG (0.01, m 0.9)': 0.45,\n"
        "             'Adam (0.1)': 0.41, 'RMSprop (0.03)': 0.76}\n"
        "t0 = time.perf_counter()\n"
        "table = {k: learned.evaluate(v, task, problems=PROBLEMS, seeds=range(TEST_SEEDS))\n"
        "         for k, v in rows.items()}\n"
        "print(f'evaluated in {time.perf_counter() - t0:.1f} s '\n"
        "      f'({PROBLEMS} problems x {TEST_SEEDS} test seeds per row)')\n"
        "print(f\"{'method':24s} {'F at step 100':>13s}  {'95 % CI':^16s} {'reference':>9s}\")\n"
        "for k, r in table.items():\n"
        "    ref = '—' if reference[k] is None else f'{reference[k]:.2f}'\n"
        "    lo, hi = r['ci']\n"
        "    print(f\"{k:24s} {r['mean']:13.3f}  [{lo:.3f}, {hi:.3f}] {ref:>9s}\")\n"
        "m = {k: r['mean'] for k, r in table.items()}\n"
        "assert m['LSTM (L2L)'] < m['HNN, pH cell (odeopt)'] < m['SGD (0.01, m 0.9)']\n"
        "assert table['LSTM (L2L)']['ci'][1] < table['HNN, pH cell (odeopt)']['ci'][0]\n"
        "assert m['RMSprop (0.03)'] == max(m.values())\n"
        "fig, ax = plt.subplots(figsize=(6, 3.5))\n"
        "for k, r in table.items():\n"
        "    ax.semilogy(r['curve'], label=k)\n"
        "ax.set_xlabel('step'); ax.set_ylabel('mean F')\n"
        "ax.set_title('quadratic task, mean over problems and test seeds'); ax.legend(fontsize=8)\n"
        "plt.show()"
    ),
    nbf.v4.new_markdown_cell(
        "**Where this differs from the reference.**\n\n"
        "Every meta-training seed (0–4; stored results of `benchmarks/learned_table.py "
        "--part quadratic`, F at step 100 over 5 × 100 problems):\n\n"
        "| net | seed 0 | 1 | 2 | 3 | 4 | mean | reference |\n"
        "|---|---|---|---|---|---|---|---|\n"
        "| original cell | 0.299 | 0.335 | 0.287 | **0.246** | 0.269 | 0.287 | 0.23 |\n"
        "| pH cell | 0.380 | **0.268** | 0.389 | 0.321 | 0.329 | 0.337 | — |\n"
        "| LSTM | 0.154 | 0.188 | 0.158 | 0.142 | **0.120** | 0.152 | 0.25 |\n\n"
        "(bold: the shipped checkpoint, chosen on held-out problems.) SGD on the same "
        "problems: 0.325.\n\n"
        "* *The authors' 0.23 is a favourable draw, also for their own code.* The "
        "reference's loop (OPT-ML `src/` run on this CPU: only the CUDA calls stubbed and "
        "the 19 validations per epoch that its selection discards skipped; seed 0) trains an "
        "original cell that scores 0.316 [0.285, 0.348] on these 500 problems and 0.48 on "
        "its own evaluation (one draw of 100 problems from torch's global generator). Its "
        "meta-gradients equal odeopt's to 6·10⁻¹⁶ (float64, same weights and problem), so "
        "the loops are the same; what moves the number is the meta-training seed (0.25–0.34 "
        "here) and the single 100-problem evaluation (sd ≈ 0.09, measured below). The "
        "original cell reaches ≤ 0.25 on one seed of five (the shipped one, 0.246); the pH "
        "cell is 0.05 behind on average (0.337 against 0.287), a gap five seeds cannot "
        "separate from the seeds' spread (Welch t = 1.9, p = 0.10): the goal ‘no cost’ is "
        "not shown, nor refuted.\n"
        "* *LSTM beats HNN, also in the reference's own code.* Its loop, run here: LSTM "
        "0.176 (seed 0) and 0.157 (seed 1) on these 500 problems — its own one-draw "
        "evaluations 0.258 and 0.168 — against 0.316 for its HNN. The reference's loop also "
        "feeds the LSTM a tensor that aliases θ.grad (docstring of `LSTMOptimizerNet`): the "
        "input weights' meta-gradient is 99 % off; with that one line fixed its LSTMs score "
        "0.147 and 0.149, so the slip costs about 0.02, within the seeds' spread. The claim "
        "that survives is about size and structure: 18 parameters against 5221, and an "
        "energy that can be read (below).\n"
        "* *NAG equals SGD here* (paired on the same problems they differ by about 0.001), "
        "where "
        "the reference has NAG 0.45 against SGD 0.33. The settings are the reference's "
        "(`learned.BASELINES`: lr 0.01, momentum 0.9, `nesterov=True` for NAG, passed to "
        "torch as configured — tested). With lr 0.01 the Nesterov correction is small at "
        "the curvatures that still matter after 100 steps, so the two runs nearly coincide; "
        "the reference's gap comes from comparing different problem draws, whose 100-problem "
        "means scatter widely (heavy tail of ill-conditioned W). The next cell measures that "
        "scatter."
    ),
    nbf.v4.new_code_cell(
        "sgd = learned.evaluate('sgd', task, problems=100, seeds=range(SPREAD_SEEDS))\n"
        "nag = learned.evaluate('nag', task, problems=100, seeds=range(SPREAD_SEEDS))\n"
        "s, n = np.array(sgd['per_seed']), np.array(nag['per_seed'])\n"
        "paired = np.abs(n - s).max()\n"
        "gaps = n[:, None] - s[None, :]  # NAG on draw i against SGD on an independent draw j\n"
        "off = ~np.eye(len(s), dtype=bool)\n"
        "print(f'paired |NAG - SGD| on the same problems: max {paired:.4f}')\n"
        "print(f'one 100-problem mean of SGD: sd {s.std(ddof=1):.3f} over {len(s)} draws, '\n"
        "      f'range [{s.min():.3f}, {s.max():.3f}]')\n"
        "print(f'unpaired NAG - SGD (independent draws): sd {gaps[off].std():.3f}, '\n"
        "      f'share >= 0.12 (the reference gap): {(gaps[off] >= 0.12).mean():.1%}')\n"
        "assert paired < 0.01\n"
        "assert gaps[off].std() > 10 * paired"
    ),
    nbf.v4.new_markdown_cell(
        "## The energy view\n\n"
        "The trained pH cell (d = 1) is the port-Hamiltonian system ẋ = (J − D)∇H + [0; 1]u "
        "on x = (q, p), H = ½M⁻¹p² + Φ(q) with Φ' = V, D = KKᵀ ⪰ 0, u = G(q), and its balance "
        "is dH/dt = −∇HᵀD∇H + yᵀu with y = M⁻¹p. `learned.energy_trace` runs the optimizer "
        "and records, at the cell's input of every step, H, the dissipated power −∇HᵀD∇H, the "
        "supplied power yᵀu and their sum dH/dt (= ∇Hᵀẋ, checked), next to the loss; "
        "`plot.learned_energy` draws them."
    ),
    nbf.v4.new_code_cell(
        "hnn = learned.pretrained('hnn_quadratic')\n"
        "batch = task.sample(100, torch.Generator().manual_seed(learned.protocol.EVAL_SEED))\n"
        "trace = learned.energy_trace(hnn, batch, 100)\n"
        "gap = np.abs(trace.dH_dt - trace.dissipated - trace.supplied).max()\n"
        "print('max |dH/dt - (-∇HᵀD∇H + yᵀu)| along the run:', gap)\n"
        "m_inv = float(hnn.net.cell.inverse_mass().detach())\n"
        "H = trace.mean('H')\n"
        "print(f'H at step 0: {H[0]:.2f}, at step 10: {H[10]:.3f}, at step 99: {H[-1]:.3f}'\n"
        "      f'  (½M⁻¹|p|² = {m_inv / 2:.3f}: p is normalised to |p| = 1 after step 0)')\n"
        "assert gap < 1e-9 * np.abs(trace.dH_dt).max()\n"
        "assert (trace.dissipated <= 0).all()\n"
        "assert trace.mean('H')[-1] < 0.1 * trace.mean('H')[0]\n"
        "supply, power = trace.mean('supplied'), trace.mean('dH_dt')\n"
        "turn = int(np.argmax(supply > 0))\n"
        "rise = int(np.argmax(power > 0))\n"
        "print(f'mean supply yᵀu: negative at steps 1-{turn - 1}, positive from step {turn} on; '\n"
        "      f'dH/dt > 0 from step {rise} on (H lowest at step {H.argmin()}: {H.min():.2f})')\n"
        "assert (supply[1:turn] < 0).all() and (supply[turn:] > 0).all() and turn <= 10\n"
        "assert (power[rise:] > 0).all() and H[-1] < 1.5 * H.min()\n"
        "plot.learned_energy(trace)\n"
        "plt.show()"
    ),
    nbf.v4.new_markdown_cell(
        "H drops by a factor of about 25 in the first ten steps, as the gradients q shrink, "
        "and then stays a little above ½M⁻¹|p|² — the normalisation of p keeps |p| = 1, so "
        "the kinetic part cannot decay; what is left of Φ(q) follows the loss. The cell "
        "dissipates at every step (−∇HᵀD∇H < 0). Its learned port G(q) brakes only at the "
        "first steps (yᵀu < 0) and then *supplies* energy, on average and in most "
        "problem-steps; late in the run the supply outweighs the dissipation and H creeps "
        "back up a little. Nothing in the structure fixes that sign — the symbolic balance "
        "is only 'passive' (dH/dt ≤ yᵀu) — so reading the trained optimizer as an energy "
        "says: a strongly damped oscillator whose learned force first brakes and then "
        "drives it, to keep the iterate moving once the damping has eaten the initial "
        "energy. (Another meta-training seed learned a force that brakes throughout: the "
        "sign is learned, not built in.)\n\n"
        "**The balance with the trained weights**, proved symbolically and checked at random "
        "states:"
    ),
    nbf.v4.new_code_cell(
        "trained = copy.deepcopy(hnn.net.cell).double()\n"
        "print(trained.to_system().energy_balance().verdict)\n"
        "q, p = torch.randn(5, 1, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64)\n"
        "b = trained.balance(q, p)\n"
        "gap = (b['dH_dt'] - b['dissipated'] - b['supplied']).abs().max().item()\n"
        "print('dH/dt − (−∇HᵀD∇H + yᵀG):', gap)\n"
        "assert gap < 1e-12"
    ),
    nbf.v4.new_markdown_cell(
        "## Transfer: digits instead of MNIST\n\n"
        "The reference meta-trains on an MNIST 784-20-10 sigmoid MLP and evaluates on it and, "
        "transferred, on the same MLP with ReLU. Here (no downloads) scikit-learn's 8×8 "
        "digits, 64-20-10, minibatches of 128, LogAndSign preprocessing (d = 2); "
        "meta-training on the first 1000 images, evaluation on the other 797. "
        "The rows below are a **stored result of `benchmarks/learned_table.py`** (the "
        "meta-trainings and the LSTM's evaluation take minutes); the budget is printed "
        "with them."
    ),
    nbf.v4.new_code_cell(
        f"TRANSFER = {TRANSFER!r}\n"
        "ref = {'hnn': (0.38, 0.36), 'hnn_original': (0.38, 0.36), 'lstm': (0.29, 2.31),\n"
        "       'sgd': (0.36, 0.45), 'nag': (0.33, 0.61), 'adam': (0.35, 0.34),\n"
        "       'rmsprop': (0.38, 0.38)}\n"
        "print(TRANSFER['budget'])\n"
        "print(f\"{'method':14s} {'sigmoid':>7s} {'95 % CI':^16s} {'ref':>5s}  \"\n"
        "      f\"{'ReLU':>7s} {'95 % CI':^16s} {'ref':>5s}\")\n"
        "for k, (sig, relu) in TRANSFER['rows'].items():\n"
        "    print(f'{k:14s} {sig[0]:7.3f} [{sig[1]:6.3f}, {sig[2]:6.3f}] {ref[k][0]:5.2f}  '\n"
        "          f'{relu[0]:7.3f} [{relu[1]:6.3f}, {relu[2]:6.3f}] {ref[k][1]:5.2f}')"
    ),
    nbf.v4.new_markdown_cell(
        "Read against the reference: digits is a much easier task than MNIST (every "
        "baseline ends near 0.03–0.2 where MNIST's end near 0.35), so only the ranks carry "
        "over. With the reference's full budget the transfer story does not reproduce: its "
        "LSTM collapsed on the ReLU net (2.31) while its HNN held (0.36); here the LSTM is "
        "best on the sigmoid net (0.003) and still transfers best of the learned optimizers "
        "(0.071 on ReLU), while both cells lose more (pH cell 0.091 → 0.324, original 0.103 "
        "→ 0.408), behind all four baselines on the ReLU net. One meta-training seed: the "
        "measured state, not a verdict on the method."
    ),
    nbf.v4.new_markdown_cell(
        "**A short run** (a few meta-iterations of the pH cell on the sigmoid MLP, then "
        "evaluated with the sigmoid and the ReLU MLP on held-out images, next to the "
        "baselines at the reference's MNIST learning rates) — much less training than the "
        "stored rows, to show the calls. With so few iterations it trains the last, "
        "partial window of every run too (`train_remainder=True`, one more update per "
        "iteration): measured with the test suite's 6 iterations of 8 MLPs, the "
        "reference's loop alone leaves the pH cell "
        "at chance level on the export cell's MLP (loss 2.302), with the remainder it "
        "drives that loss to 0.004."
    ),
    nbf.v4.new_code_cell(
        "t0 = time.perf_counter()\n"
        "digits = learned.meta_train(learned.DigitsMLPTask(), iterations=DIGITS_ITERATIONS,\n"
        "                            problems=DIGITS_PROBLEMS, out_mul=0.1,\n"
        "                            train_remainder=True,\n"
        "                            validate_every=DIGITS_VALIDATE_EVERY)\n"
        "print(f'meta-training {time.perf_counter() - t0:.1f} s')\n"
        "for act in ('sigmoid', 'relu'):\n"
        "    test = learned.DigitsMLPTask(activation=act, split='test')\n"
        "    short = {k: learned.evaluate(v, test, problems=DIGITS_TEST_PROBLEMS,\n"
        "                                 seeds=range(DIGITS_TEST_SEEDS))['mean']\n"
        "             for k, v in {'HNN (short)': digits, 'Adam': 'adam', 'SGD': 'sgd',\n"
        "                          'NAG': 'nag', 'RMSprop': 'rmsprop'}.items()}\n"
        "    print(act, {k: round(v, 3) for k, v in short.items()})"
    ),
    nbf.v4.new_markdown_cell(
        "**Export.** `LearnedOptimizer` runs the trained net on any model's parameters "
        "(state: p per parameter, in `state_dict`), and `to_source` writes the same optimizer "
        "as a file that needs only torch."
    ),
    nbf.v4.new_code_cell(
        "from sklearn.datasets import load_digits\n"
        "X, y = load_digits(return_X_y=True)\n"
        "X, y = torch.tensor(X[:500] / 16.0, dtype=torch.float32), torch.tensor(y[:500])\n"
        "torch.manual_seed(0)\n"
        "model = torch.nn.Sequential(torch.nn.Linear(64, 20), torch.nn.Sigmoid(),\n"
        "                            torch.nn.Linear(20, 10))\n"
        "opt = learned.LearnedOptimizer(model.parameters(), digits.net, lr=0.1)\n"
        "losses = []\n"
        "for _ in range(200):\n"
        "    opt.zero_grad()\n"
        "    loss = torch.nn.functional.cross_entropy(model(X), y)\n"
        "    loss.backward()\n"
        "    opt.step()\n"
        "    losses.append(loss.item())\n"
        "print(f'loss {losses[0]:.3f} -> {losses[-1]:.3f}')\n"
        "assert losses[-1] < 0.5 * losses[0]\n"
        "print(learned.to_source(digits.net)[:400])"
    ),
]

nb = nbf.v4.new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, Path(__file__).with_name("learned_optimizer.ipynb"))
