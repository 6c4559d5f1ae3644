"""Writes notebooks/learned_optimizer.ipynb (kept as code so that diffs stay readable)."""

from pathlib import Path

import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell(
        "# A learned port-Hamiltonian optimizer\n\n"
        "Timofeev, Afonin & Liu (seed 002; ALGORITHMS.md §4): every parameter entry runs a "
        "tiny pH cell whose coordinate q is the gradient and whose momentum p is the "
        "optimizer's last output,\n\n"
        "q̇ = M⁻¹p − D_q,  ṗ = −V(q) − D_p + G(q),  [D_q; D_p] = D·[V(q); M⁻¹p],\n\n"
        "and the step is θ ← θ + out_mul·B[q̇; q]. V, G are 1→1→1 ReLU nets, M⁻¹ = LᵀL and — "
        "odeopt's change to the original — D = KKᵀ acts on ∇H, which makes the cell a "
        "port-Hamiltonian system with a provable balance."
    ),
    nbf.v4.new_code_cell(
        "# Sizes of the two meta-trainings (papermill-style parameters: the test suite runs\n"
        "# this notebook with smaller ones, see tests/test_notebooks.py)\n"
        "QUADRATIC_ITERATIONS, QUADRATIC_PROBLEMS = 100, 16\n"
        "DIGITS_ITERATIONS, DIGITS_PROBLEMS, DIGITS_VALIDATE_EVERY = 12, 8, 4",
        metadata={"tags": ["parameters"]},
    ),
    nbf.v4.new_code_cell(
        "import time\n"
        "import matplotlib.pyplot as plt\n"
        "import numpy as np\n"
        "import torch\n"
        "from odeopt import learned\n\n"
        "torch.set_num_threads(1)\n"
        "torch.manual_seed(0)\n"
        "net = learned.HNNOptimizerNet()\n"
        "print(sum(p.numel() for p in net.parameters()), 'parameters')\n"
        "cell = net.cell.to_system()\n"
        "print(cell)\n"
        "print(cell.energy_balance())"
    ),
    nbf.v4.new_markdown_cell(
        "**Meta-training on the learning-to-learn quadratics** F(θ) = |Wθ − y|² (10-D, "
        "Gaussian W and y, θ₀ = 0): Adam on Σ_t F(θ_t) over windows of 15 steps, 100 steps "
        "per problem, out_mul = 0.001 (the reference's best). Then the loss at step 100, "
        "mean over 100 fresh problems, next to torch's optimizers at the reference's "
        "learning rates and the reference's numbers."
    ),
    nbf.v4.new_code_cell(
        "task = learned.QuadraticTask()\n"
        "t0 = time.perf_counter()\n"
        "result = learned.meta_train(task, iterations=QUADRATIC_ITERATIONS,\n"
        "                            problems=QUADRATIC_PROBLEMS, out_mul=1e-3)\n"
        "print(f'meta-training {time.perf_counter() - t0:.1f} s')\n"
        "print('validation', np.round(result.validation, 3))\n"
        "test = task.sample(100, torch.Generator().manual_seed(123))\n"
        "curves = {'HNN (odeopt)': learned.run_learned(result.net, test, out_mul=1e-3)}\n"
        "baselines = {\n"
        "    'Adam (0.1)': lambda ps: torch.optim.Adam(ps, lr=0.1),\n"
        "    'RMSprop (0.03)': lambda ps: torch.optim.RMSprop(ps, lr=0.03),\n"
        "    'SGD (0.01, m 0.9)': lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9),\n"
        "    'NAG (0.01, m 0.9)': lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9,\n"
        "                                                   nesterov=True),\n"
        "}\n"
        "curves.update({k: learned.run_torch(f, test) for k, f in baselines.items()})\n"
        "reference = {'HNN (odeopt)': 0.23, 'Adam (0.1)': 0.41, 'RMSprop (0.03)': 0.76,\n"
        "             'SGD (0.01, m 0.9)': 0.33, 'NAG (0.01, m 0.9)': 0.45}\n"
        "print(f\"{'method':20s} {'F at step 100':>14s} {'reference':>10s}\")\n"
        "for k, c in curves.items():\n"
        "    print(f'{k:20s} {c[-1].mean():14.3f} {reference[k]:10.2f}')\n"
        "assert np.isfinite(curves['HNN (odeopt)']).all()\n"
        "assert curves['HNN (odeopt)'][-1].mean() < curves['SGD (0.01, m 0.9)'][-1].mean()\n"
        "fig, ax = plt.subplots(figsize=(6, 3.5))\n"
        "for k, c in curves.items():\n"
        "    ax.semilogy(c.mean(axis=1), label=k)\n"
        "ax.set_xlabel('step'); ax.set_ylabel('mean F over 100 problems'); ax.legend()\n"
        "plt.show()"
    ),
    nbf.v4.new_markdown_cell(
        "**The cell it learned** is still a pH system: the same balance, now with the "
        "trained weights (R = D positive semidefinite, so dH/dt ≤ yᵀu: the verdict is "
        "'passive' — its input u = G(q) has no sign)."
    ),
    nbf.v4.new_code_cell(
        "trained = result.net.cell.double()\n"
        "print(trained.to_system().energy_balance().verdict)\n"
        "q, p = torch.randn(5, 1, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64)\n"
        "b = trained.balance(q, p)\n"
        "gap = (b['dH_dt'] - b['dissipated'] - b['supplied']).abs().max().item()\n"
        "print('dH/dt − (−∇HᵀD∇H + yᵀG):', gap)\n"
        "result.net.float();"
    ),
    nbf.v4.new_markdown_cell(
        "**Networks: digits instead of MNIST** (no downloads). A 64-20-10 sigmoid MLP on "
        "scikit-learn's digits, minibatches of 128, LogAndSign preprocessing (d = 2). "
        "A short meta-training here (12 iterations; the reference's schedule is far longer), "
        "then evaluated on held-out images with the sigmoid net and, transferred, a ReLU net."
    ),
    nbf.v4.new_code_cell(
        "t0 = time.perf_counter()\n"
        "digits = learned.meta_train(learned.DigitsMLPTask(), iterations=DIGITS_ITERATIONS,\n"
        "                            problems=DIGITS_PROBLEMS, out_mul=0.1,\n"
        "                            validate_every=DIGITS_VALIDATE_EVERY)\n"
        "print(f'meta-training {time.perf_counter() - t0:.1f} s')\n"
        "for act in ('sigmoid', 'relu'):\n"
        "    batch = learned.DigitsMLPTask(activation=act, split='test').sample(\n"
        "        20, torch.Generator().manual_seed(1))\n"
        "    rows = {'HNN (odeopt)': learned.run_learned(digits.net, batch, out_mul=0.1)}\n"
        "    adam = lambda ps: torch.optim.Adam(ps, lr=0.03)\n"
        "    sgd = lambda ps: torch.optim.SGD(ps, lr=0.3, momentum=0.9)\n"
        "    rows['Adam (0.03)'] = learned.run_torch(adam, batch)\n"
        "    rows['SGD (0.3, m 0.9)'] = learned.run_torch(sgd, batch)\n"
        "    print(act, {k: round(float(v[-1].mean()), 3) for k, v in rows.items()})"
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
