"""Writes notebooks/research_systems.ipynb (kept as code so that diffs stay readable)."""

from pathlib import Path

import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell(
        "# The research systems\n\nEnergy Conserving Descent, goal-oriented braking, "
        "Massaroli's pH training and Bensaid's energy-controlled steps, each a short zoo "
        "definition: its energy verdict, a batched integration, an exported optimizer."
    ),
    nbf.v4.new_code_cell(
        "# The end of Massaroli's batch-mode run (papermill-style parameter: the test suite\n"
        "# runs this notebook with a shorter one, see tests/test_notebooks.py)\n"
        "MASSAROLI_T_END = 60.0",
        metadata={"tags": ["parameters"]},
    ),
    nbf.v4.new_code_cell(
        "import matplotlib.pyplot as plt\nimport numpy as np\nimport torch\nimport odeopt as oo\n"
        "from odeopt import plot, problems, zoo\n\n"
        "for name in zoo.names():\n"
        "    b = zoo.get(name).energy_balance()\n"
        "    print(f'{name:20s} {b.verdict:13s} dH/dt = {b.rate}')"
    ),
    nbf.v4.new_markdown_cell(
        "**BBI stores its energy.** The field is written on the level set H = E, and the "
        "discrete rule symplectic Euler makes of it is ECD's (rescale, kick, drift):"
    ),
    nbf.v4.new_code_cell("rule = oo.discretize(zoo.bbi(), 'symplectic_euler')\nprint(rule)"),
    nbf.v4.new_markdown_cell(
        "Its flow on F = θ²/2 + 1/2 beside heavy ball's and Nesterov's (whose friction "
        "r/(t + t₀) depends on time: drawn at t = 1): BBI's orbits stay on level sets of H, "
        "the other two spiral in."
    ),
    nbf.v4.new_code_cell(
        "fig, axes = plt.subplots(1, 3, figsize=(15, 4))\n"
        "plot.phase_portrait(zoo.bbi(), ax=axes[0], grid=31)\n"
        "plot.phase_portrait(zoo.heavy_ball(), ax=axes[1], grid=31)\n"
        "plot.phase_portrait(zoo.nesterov(), ax=axes[2], grid=31, t=1.0)\n"
        "fig.tight_layout()"
    ),
    nbf.v4.new_markdown_cell(
        "**Bensaid's LC_EGD** (gradient flow, Euler, step accepted only if F drops by "
        "λh|g|²) on polyThree from 1000 starts, against plain GD with the same first step, "
        "as a study: where each start ends (within 0.05 of which minimum, diverged, ...)."
    ),
    nbf.v4.new_code_cell(
        "pb = problems.poly_three()\n"
        "x0 = np.random.default_rng(0).uniform(-3, 3, (1000, 2))\n"
        "gf = zoo.gradient_flow()\n"
        "study = oo.Study(pb, {'theta': x0}, {\n"
        "    'GD': oo.Run(gf, 'euler', steps=2000, h=0.1),\n"
        "    'LC_EGD': oo.Run(gf, oo.schemes.EnergyDecrease('euler'), t_span=(0, 1e8), h=0.1,\n"
        "                     gtol=1e-4, max_steps=200_000),\n"
        "})\n"
        "result = study.run(progress=False)\n"
        "print(result.table().round(3))\n"
        "assert (result.data['status'].sel(run='LC_EGD') == 'converged').all()\n"
        "fig, axes = plt.subplots(1, 3, figsize=(18, 4.5))\n"
        "result.plot_basins('GD', ax=axes[0])\n"
        "result.plot_basins('LC_EGD', ax=axes[1])\n"
        "result.plot_table(ax=axes[2])\n"
        "fig.tight_layout()"
    ),
    nbf.v4.new_markdown_cell(
        "Eight LC_EGD runs saved along the way: the paths, F(t) and the step size the energy "
        "test accepted (it shrinks where GD's fixed h = 0.1 would overshoot)."
    ),
    nbf.v4.new_code_cell(
        "few = oo.integrate(gf, pb, {'theta': x0[:8]}, t_span=(0, 3), h=0.1,\n"
        "                   scheme=oo.schemes.EnergyDecrease('euler'), gtol=1e-4)\n"
        "assert (few.status == 'converged').all()\n"
        "fig, axes = plt.subplots(1, 3, figsize=(16, 4))\n"
        "few.plot(ax=axes[0])\n"
        "few.plot_loss(ax=axes[1])\n"
        "few.plot_step_size(ax=axes[2])\n"
        "fig.tight_layout()"
    ),
    nbf.v4.new_markdown_cell(
        "**Goal-oriented braking**: the gain switches from k₀ to k₁ once, when F reaches the "
        "goal — located per trajectory:"
    ),
    nbf.v4.new_code_cell(
        "tr = oo.integrate(zoo.braking(k0=0.05, k1=3.0, goal=0.2), problems.quadratic(3),\n"
        "                  {'theta': np.random.default_rng(0).uniform(-2, 2, (4, 3))},\n"
        "                  steps=1500, h=0.01)\n"
        "for e in tr.events:\n"
        "    print(f'trajectory {e.trajectory}: switched at t = {e.time:.4f}')\n"
        "assert len(tr.events) == 4\n"
        "ax = tr.plot_loss(ax=plt.figure(figsize=(7, 4)).gca())\n"
        "for e in tr.events:\n"
        "    ax.axvline(e.time, color='0.6', ls='--', lw=0.8)\n"
        "ax.axhline(0.2, color='r', lw=0.8, label='goal F = 0.2')\n"
        "ax.legend();"
    ),
    nbf.v4.new_markdown_cell(
        "**Massaroli's batch mode** on two Gaussian blobs with scipy's RK45 (H = the "
        "regularised loss never rises):"
    ),
    nbf.v4.new_code_cell(
        "blobs = problems.blobs(samples=200)\n"
        "th0 = np.asarray(blobs.initial(0), float).reshape(1, -1)\n"
        "tr = oo.integrate(zoo.massaroli(beta=0.1), blobs, {'theta': th0},\n"
        "                  t_span=(0, MASSAROLI_T_END),\n"
        "                  scheme='rk45', rtol=1e-6, atol=1e-8)\n"
        "print('accuracy', blobs.accuracy(tr.final['theta'])[0])\n"
        "assert np.all(np.diff(tr.energy[:, 0]) <= 1e-9)\n"
        "fig, axes = plt.subplots(1, 2, figsize=(12, 4))\n"
        "tr.plot_energy(ax=axes[0])\n"
        "tr.plot_loss(ax=axes[1]);"
    ),
    nbf.v4.new_markdown_cell(
        "And every system is an optimizer: exported BBI trains a small MLP on digits."
    ),
    nbf.v4.new_code_cell(
        "from sklearn.datasets import load_digits\n"
        "X, y = load_digits(return_X_y=True)\n"
        "X, y = torch.tensor(X[:300] / 16.0), torch.tensor(y[:300])\n"
        "torch.manual_seed(0)\n"
        "model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(),\n"
        "                            torch.nn.Linear(32, 10)).double()\n"
        "opt = rule.to_torch()(model.parameters(), lr=0.05, delta_v=-0.1)\n"
        "def closure():\n"
        "    opt.zero_grad()\n"
        "    loss = torch.nn.functional.cross_entropy(model(X), y)\n"
        "    loss.backward()\n"
        "    return loss\n"
        "losses = [opt.step(closure).item() for _ in range(200)]\n"
        "print(f'loss {losses[0]:.3f} -> {losses[-1]:.3f}')\n"
        "assert losses[-1] < 0.5 * losses[0]"
    ),
]

nb = nbf.v4.new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, Path(__file__).with_name("research_systems.ipynb"))
