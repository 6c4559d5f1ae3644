"""Writes notebooks/quickstart.ipynb (kept as code so that diffs stay readable)."""

from pathlib import Path

import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell(
        "# odeopt quickstart\n\nAn optimizer as a port-Hamiltonian ODE: define it, prove its "
        "energy balance, compile its vector field."
    ),
    nbf.v4.new_code_cell(
        "import numpy as np\nimport sympy as sp\nimport odeopt as oo\n\n"
        "# heavy ball in five lines: H = F + |p|²/(2m), J canonical, R = diag(0, γ)\n"
        'theta, p = oo.blocks("theta p")\n'
        'm, gamma = oo.parameters("m gamma", positive=True)\n'
        "F = oo.loss(theta)\n"
        "hb = oo.PortHamiltonian(F + oo.sqnorm(p) / (2 * m), [theta, p],\n"
        "                        J=[[0, 1], [-1, 0]], R=[[0, 0], [0, gamma]],\n"
        "                        parameters={m: 1.0, gamma: 0.5})\n"
        "hb"
    ),
    nbf.v4.new_code_cell(
        "balance = hb.energy_balance()\n"
        "print(balance)\n"
        'assert balance.verdict == "dissipative"\n'
        "balance"
    ),
    nbf.v4.new_markdown_cell("The zoo has the same systems, and more; BBI conserves its energy."),
    nbf.v4.new_code_cell(
        "bbi = oo.zoo.bbi(delta_v=-1.0)\n"
        "print(bbi)\n"
        'assert bbi.energy_balance().verdict == "conservative"'
    ),
    nbf.v4.new_markdown_cell(
        "Compiled vector fields work on batches: (batch, n) arrays, numpy or torch."
    ),
    nbf.v4.new_code_cell(
        "rng = np.random.default_rng(0)\n"
        "state = {'theta': rng.standard_normal((4, 3)), 'p': rng.standard_normal((4, 3))}\n"
        "F_val = 0.5 * (state['theta'] ** 2).sum(-1)\n"
        "field = hb.compile('numpy').field(state, F_val, state['theta'], gamma=0.1)\n"
        "np.testing.assert_allclose(field['p'], -state['theta'] - 0.1 * state['p'])\n"
        "field['p'].shape"
    ),
    nbf.v4.new_markdown_cell(
        "Explicit mode: the same system on a concrete 1-D loss, and its phase portrait."
    ),
    nbf.v4.new_code_cell(
        "import matplotlib.pyplot as plt\n"
        "x = sp.Symbol('x', real=True)\n"
        "ex = bbi.explicit(x**2 / 2, [x])\n"
        "comp = ex.compile('numpy')\n"
        "X, P = np.meshgrid(np.linspace(-2, 2, 31), np.linspace(-2, 2, 31))\n"
        "s = {'theta': X.reshape(-1, 1), 'p': P.reshape(-1, 1)}\n"
        "f = comp.field(s)\n"
        "plt.contourf(X, P, comp.energy(s).reshape(X.shape), 20, cmap='Blues')\n"
        "plt.streamplot(X, P, f['theta'].reshape(X.shape), f['p'].reshape(X.shape), color='k')\n"
        "plt.xlabel('theta'); plt.ylabel('p'); plt.title('BBI on F = x²/2, ΔV = -1');"
    ),
    nbf.v4.new_markdown_cell(
        "Integrate: 2000 heavy-ball trajectories on Himmelblau, symplectic Euler; the energy "
        "check along them; which of the four minima each one reaches."
    ),
    nbf.v4.new_code_cell(
        "from odeopt import problems\n"
        "him = problems.himmelblau()\n"
        "theta0 = np.random.default_rng(1).uniform(-5, 5, (2000, 2))\n"
        "traj = oo.integrate(oo.zoo.heavy_ball(friction=1.0), him, {'theta': theta0},\n"
        "                    t_span=(0.0, 20.0), h=0.01, scheme='symplectic_euler', save=20)\n"
        "print(traj)\n"
        "minima = np.array([m.point for m in him.minima], dtype=float)\n"
        "dist = np.linalg.norm(traj['theta'][-1][:, None] - minima[None], axis=2)\n"
        "reached = np.bincount(dist.argmin(1)[dist.min(1) < 0.05], minlength=4)\n"
        "print('trajectories per minimum:', dict(zip(map(tuple, minima.round(2)), reached)))\n"
        "assert reached.sum() == 2000\n"
        "traj.plot('theta', max_lines=80); plt.plot(*minima.T, 'r*', ms=12);"
    ),
    nbf.v4.new_code_cell(
        "# the discrete-gradient scheme never lets H rise; explicit Euler does\n"
        "for scheme in ['euler', 'discrete_gradient']:\n"
        "    tr = oo.integrate(oo.zoo.heavy_ball(friction=0.3), him, {'theta': theta0[:64]},\n"
        "                      t_span=(0.0, 3.0), h=0.01, scheme=scheme)\n"
        "    print(scheme, tr.energy_report(tol=1e-10), sep='\\n')"
    ),
    nbf.v4.new_markdown_cell("A scheme run on symbols is the update rule it makes of the ODE."),
    nbf.v4.new_code_cell(
        "print(oo.schemes.run_symbolic(oo.zoo.heavy_ball(), 'symplectic_euler'))\n"
        "[(cp.point, cp.value, cp.kind) for cp in problems.poly_two().critical_points()]"
    ),
    nbf.v4.new_markdown_cell(
        "Derive the rule, recognise it, export it: heavy ball + symplectic Euler *is* "
        "`torch.optim.SGD(lr=h²/m, momentum=1 − γh/m)`."
    ),
    nbf.v4.new_code_cell(
        "import torch\n"
        "rule = oo.discretize(oo.zoo.heavy_ball(), 'symplectic_euler')\n"
        "print(rule.identify())\n"
        "Opt = rule.to_torch()\n"
        "w1 = torch.nn.Parameter(torch.tensor([3.0, -1.0], dtype=torch.float64))\n"
        "w2 = torch.nn.Parameter(w1.detach().clone())\n"
        "ours = Opt([w1], lr=0.1, mass=1.0, friction=2.0)\n"
        "sgd = torch.optim.SGD([w2], lr=0.01, momentum=0.8)\n"
        "for _ in range(50):\n"
        "    for w, opt in ((w1, ours), (w2, sgd)):\n"
        "        opt.zero_grad(); him.value(w[None])[0].backward(); opt.step()\n"
        "print(w1.detach(), w2.detach())\n"
        "assert torch.allclose(w1, w2, rtol=0, atol=1e-12)\n"
        "rule"
    ),
]
nb = nbf.v4.new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, Path(__file__).with_name("quickstart.ipynb"))
