"""Writes notebooks/bensaid_tables.ipynb (kept as code so that diffs stay readable).

Bensaid's polyTwo and polyThree tables (ALGORITHMS.md §5, seed 003) reproduced through
``oo.Study``: every optimizer is an ``oo.Run``, each table sits beside the records, every
difference is explained in the text and the robust claims are asserted.
"""

from pathlib import Path

import nbformat as nbf

md = nbf.v4.new_markdown_cell
code = nbf.v4.new_code_cell

cells = [
    md(
        "# Bensaid's tables: where do GD, Momentum, Adam and the energy-controlled rules end?\n\n"
        "Bensaid (seed 003; ALGORITHMS.md §5) trains one neuron ŷ = σ(w·x + b) on x ∈ {0, 1}, "
        "y = 0, so that the loss R(w, b) = ¼[σ(b)² + σ(w + b)²] has exactly known critical "
        "points, and counts where optimizers started uniformly in [−3, 3]² end. The protocol: "
        "stop when |∇R| < 1e-4 or after 200 000 epochs; a start *reaches* a minimum when its "
        'final point lies within 0.05 of it; otherwise it converged elsewhere ("other"), did '
        "not converge, or diverged. `oo.Study` runs exactly that protocol: one `oo.Run` per "
        "optimizer (a system, a scheme and `integrate`'s keywords), `result.table()` the share "
        "of starts per outcome.\n\n"
        "* **polyTwo** σ = z² − 1: four global minima R = 0 at (0, ±1), (2, −1), (−2, 1).\n"
        "* **polyThree** σ = 2z³ − 3z² + 5: global minimum (0, −1); local minima (2, −1), "
        "(−2, 1) (R = 4) and (0, 1) (R = 8)."
    ),
    code(
        "# Sizes (papermill-style parameters: tests/test_notebooks.py runs smaller ones).\n"
        "# Bensaid's: 10 000 draws in [-3, 3]^2, at most 200 000 epochs per start.\n"
        "STARTS = 10_000\n"
        "MAX_STEPS = 200_000",
        metadata={"tags": ["parameters"]},
    ),
    code(
        "import time\n\n"
        "import matplotlib.pyplot as plt\n"
        "import numpy as np\n"
        "import pandas as pd\n\n"
        "import odeopt as oo\n"
        "from odeopt import problems, zoo\n\n"
        "pd.set_option('display.width', 200)\n"
        "x0 = {'theta': np.random.default_rng(0).uniform(-3, 3, (STARTS, 2))}"
    ),
    md(
        "## The optimizers as runs\n\n"
        "The seed text states no hyper-parameter; ALGORITHMS.md §5 states the energy rules' "
        "constants (λ = ½, η/2 on rejection, η·10⁴ after acceptance) and the stopping test. "
        "**Chosen here** (and shown below to reproduce the records): a first step "
        "η = h = 0.1 for every rule, Momentum's friction β̄ = 1 and Adam's rates β̄₁ = 1, "
        "β̄₂ = 0.01, ε = 1e-8, i.e. the usual discrete β₁ = 1 − ηβ̄₁ = 0.9, "
        "β₂ = 1 − ηβ̄₂ = 0.999 at η = 0.1, and Euler–Richardson's tolerance 0.01.\n\n"
        "* **GD**: gradient flow θ' = −∇R, explicit Euler, h = 0.1.\n"
        "* **Momentum**: Bensaid's θ' = −v, v' = −β̄v + ∇R is the heavy ball "
        "(`zoo.heavy_ball(mass=1, friction=β̄)`: θ' = p, p' = −∇R − β̄p) under p = −v; no "
        "parameter is needed beyond m = 1, γ = β̄. The discrete Momentum "
        "v ← (1 − ηβ̄)v + η∇R, θ ← θ − ηv (the new v) is *symplectic* Euler on it "
        "(`symplectic_euler`: p first, then θ with the new p); explicit Euler (θ moves with "
        "the old v) is another rule, run beside it to show that the variant matters.\n"
        "* **Adam**: `zoo.adam` (Barakat–Bianchi's flow θ' = −m/(√s + ε), m' = β̄₁(∇R − m), "
        "s' = β̄₂(∇R² − s), no bias correction), m₀ = s₀ = 0, with symplectic Euler: m and s "
        "first, then θ with the new m, s — Adam's order; explicit Euler beside it again.\n"
        "* **LC_EGD**: `EnergyDecrease('euler')` on gradient flow: θ − ηg accepted iff "
        "R(θ − ηg) − R(θ) ≤ −½η|g|², η/2 on rejection, η·10⁴ after acceptance; and the same "
        "with the step capped at h ≤ 0.2 (`h_max=0.2`).\n"
        "* **LC_M**: `EnergyDecrease('symplectic_euler', rate_at='new')` on the heavy ball "
        "(β̄ = 1): accept iff V_{n+1} − V_n ≤ −β̄λη|v_{n+1}|², V = R + ½|v|²; and capped at "
        "h ≤ 0.2.\n"
        "* **Euler–Richardson**: `EulerRichardson('reference')` with the controller of "
        "Bensaid's code (θᵢ = θ − ηg(θ), err = ½η|g(θ) − g(θᵢ)|/0.01, accept θ − ηg(θᵢ) if "
        "err ≤ 1, then η ← 0.9η/√err), |∇R| < 1e-4 tested at the Euler predictor as that code "
        "does. This is the *reference* variant (full step to θᵢ, error ½η|Δg|), not the "
        "textbook midpoint one (η/2).\n\n"
        "The fixed-step rules run for at most `MAX_STEPS` steps on the fused numba kernel "
        "(`backend='numba'`: the whole loop compiled, the same IEEE operations as numpy); the "
        "adaptive ones on numpy (the kernel does not run adaptive schemes), until t = 10⁸ or "
        "`MAX_STEPS` steps."
    ),
    code(
        "gf, hb = zoo.gradient_flow(), zoo.heavy_ball(mass=1.0, friction=1.0)\n"
        "adam = zoo.adam(beta1_bar=1.0, beta2_bar=0.01, eps=1e-8)\n"
        "fixed = dict(h=0.1, steps=MAX_STEPS, gtol=1e-4, backend='numba')\n"
        "adaptive = dict(h=0.1, t_span=(0, 1e8), max_steps=MAX_STEPS, gtol=1e-4)\n"
        "richardson = oo.schemes.EulerRichardson(\n"
        "    'reference',\n"
        "    controller=oo.schemes.StepController(norm='l2', rtol=0, atol=0.01, grow=np.inf, "
        "shrink=0),\n"
        ")\n"
        "lc_m = dict(inner='symplectic_euler', rate_at='new')\n"
        "runs = {\n"
        "    'GD': oo.Run(gf, 'euler', **fixed),\n"
        "    'Momentum': oo.Run(hb, 'symplectic_euler', **fixed),\n"
        "    'Momentum (explicit Euler)': oo.Run(hb, 'euler', **fixed),\n"
        "    'Adam': oo.Run(adam, 'symplectic_euler', **fixed),\n"
        "    'Adam (explicit Euler)': oo.Run(adam, 'euler', **fixed),\n"
        "    'LC_EGD': oo.Run(gf, oo.schemes.EnergyDecrease('euler'), **adaptive),\n"
        "    'LC_EGD, h ≤ 0.2': oo.Run(gf, oo.schemes.EnergyDecrease('euler', h_max=0.2), "
        "**adaptive),\n"
        "    'LC_M': oo.Run(hb, oo.schemes.EnergyDecrease(**lc_m), **adaptive),\n"
        "    'LC_M, h ≤ 0.2': oo.Run(hb, oo.schemes.EnergyDecrease(**lc_m, h_max=0.2), "
        "**adaptive),\n"
        "    'Euler–Richardson': oo.Run(gf, richardson, **adaptive),\n"
        "}\n"
        "# the record each run is compared with (the capped rules are variants of Bensaid's)\n"
        "RECORD_OF = {'LC_EGD, h ≤ 0.2': 'LC_EGD'}"
    ),
    md(
        "## The records\n\n"
        "ALGORITHMS.md §5's raw records (10 000 draws in [−3, 3]², one hyper-parameter set), "
        "in the columns of `result.table()`. A record lists the shares of the four minima and "
        "sometimes the diverged share; where the four shares and the stated diverged share "
        "add up to 1 (to the records' rounding, ±0.001) the unstated outcomes are 0; where "
        "they do not (polyThree's Momentum states only 67.9 % diverged) they are unknown "
        "(NaN). No LC_M record is given, nor an LC_EGD one for polyTwo."
    ),
    code(
        "def records(rows, columns):\n"
        '    """The records as a DataFrame in `columns`: the stated shares, 0 for the unstated\n'
        '    outcomes of a row whose stated shares add up to 1 (±0.001), NaN otherwise."""\n'
        "    frame = pd.DataFrame(rows).T.reindex(columns=columns).astype(float)\n"
        "    complete = (frame.sum(axis=1) - 1).abs() <= 0.0015\n"
        "    frame[complete] = frame[complete].fillna(0.0)\n"
        "    frame.index.name = 'run'\n"
        "    return frame\n\n\n"
        "M = ['(-2, 1)', '(2, -1)', '(0, -1)', '(0, 1)']  # the records' order\n"
        "RECORDS = {\n"
        "    'poly_two': {\n"
        "        'GD': dict(zip(M, [0.208, 0.205, 0.189, 0.181]), diverged=0.218),\n"
        "        'Momentum': dict(zip(M, [0.147, 0.140, 0.357, 0.356])),\n"
        "        'Adam': dict(zip(M, [0.151, 0.148, 0.354, 0.347])),\n"
        "        'Euler–Richardson': dict(zip(M, [0.214, 0.209, 0.293, 0.285])),\n"
        "    },\n"
        "    'poly_three': {\n"
        "        'GD': dict(zip(M, [0.0] * 4), diverged=1.0),\n"
        "        'Momentum': dict(diverged=0.679),\n"
        "        'Adam': dict(zip(M, [0.145, 0.137, 0.219, 0.498])),\n"
        "        'LC_EGD': dict(zip(M, [0.216, 0.216, 0.283, 0.286]), diverged=0.0),\n"
        "        'Euler–Richardson': dict(zip(M, [0.212, 0.212, 0.286, 0.290])),\n"
        "    },\n"
        "}\n\n\n"
        "def side_by_side(table, record):\n"
        '    """Each run\'s measured shares and, under them, Bensaid\'s record (if any)."""\n'
        "    rows = {}\n"
        "    for run in table.index:\n"
        "        rows[(run, 'odeopt')] = table.loc[run]\n"
        "        name = RECORD_OF.get(run, run)\n"
        "        if name in record.index:\n"
        "            rows[(run, f'Bensaid ({name})')] = record.loc[name]\n"
        "    return pd.DataFrame(rows).T[table.columns]\n\n\n"
        "def z_scores(table, record):\n"
        '    """(measured − record)/σ per stated record entry, σ the standard deviation of the\n'
        "    difference of two independent shares from STARTS and 10 000 draws:\n"
        '    σ² = p(1 − p)(1/STARTS + 1/10 000), p their mean (0 where both are 0 or both 1)."""\n'
        "    out = {}\n"
        "    for run in table.index:\n"
        "        name = RECORD_OF.get(run, run)\n"
        "        if name not in record.index:\n"
        "            continue\n"
        "        measured, rec = table.loc[run], record.loc[name]\n"
        "        p = (measured + rec) / 2\n"
        "        sigma = np.sqrt(p * (1 - p) * (1 / STARTS + 1 / 10_000))\n"
        "        diff = measured - rec\n"
        "        with np.errstate(divide='ignore', invalid='ignore'):\n"
        "            z = np.where(sigma > 0, diff / sigma, np.where(diff == 0, 0.0, np.inf))\n"
        "        out[run] = pd.Series(z, index=table.columns).where(rec.notna())\n"
        "    return pd.DataFrame(out).T\n\n\n"
        "def study(problem):\n"
        "    t0 = time.perf_counter()\n"
        "    result = oo.Study(problem, x0, runs).run()\n"
        "    print(f'{problem.name}: {len(runs)} runs x {STARTS} starts in '\n"
        "          f'{time.perf_counter() - t0:.1f} s')\n"
        "    table = result.table()\n"
        "    record = records(RECORDS[problem.name], table.columns)\n"
        "    return result, table, record"
    ),
    md("## polyTwo"),
    code(
        "two, table2, record2 = study(problems.poly_two())\nside_by_side(table2, record2).round(3)"
    ),
    md(
        "The difference to each stated record entry in standard deviations of the difference "
        "of two independent samples (|z| < 2 is what two draws of the same experiment "
        "give 95 % of the time):"
    ),
    code("z2 = z_scores(table2, record2)\nz2.round(1)"),
    md("## polyThree"),
    code(
        "three, table3, record3 = study(problems.poly_three())\n"
        "side_by_side(table3, record3).round(3)"
    ),
    code("z3 = z_scores(table3, record3)\nz3.round(1)"),
    md(
        "## Every difference, explained\n\n"
        "Numbers quoted here are those of the shipped size (10 000 starts, at most 200 000 "
        "steps); the tables above are the run's own.\n\n"
        "1. **The starts.** Ours are numpy's `default_rng(0)` draws, not Bensaid's, so each "
        "share differs from the record by sampling noise: σ ≈ 0.006 for a share near 0.2 "
        "between two samples of 10 000. The z-tables measure every stated entry in those "
        "units; for the rows that agree (GD, Momentum, Adam and Euler–Richardson on both "
        "problems, the capped LC_EGD on polyThree) the largest |z| is 2.4 (polyTwo Momentum's "
        "(2, −1): 0.152 against 0.140), the others at most 2.2 — the spread of two draws of "
        "one experiment. polyTwo is symmetric under (w, b) → (−w, −b) (σ is even), so its "
        "paired minima have equal basins and their measured shares differ by noise alone "
        "(GD: 0.207 / 0.211 at (−2, 1) / (2, −1)).\n"
        "2. **The columns.** `result.table()` orders the minima as "
        "`problem.critical_points()` lists them (polyTwo: (−2, 1), (0, −1), (0, 1), (2, −1); "
        'polyThree: (0, −1), (−2, 1), (2, −1), (0, 1)) and adds "other", "not '
        'converged" and "diverged"; the records are reordered into those columns. '
        "Unstated record entries are 0 where a row's shares add up to 1 and NaN otherwise "
        "(polyThree's Momentum).\n"
        "3. **The step cap.** The protocol's 200 000 epochs is `steps=MAX_STEPS` for the "
        "fixed-step rules (each trajectory stops at |∇R| < 1e-4) and `max_steps=MAX_STEPS` for "
        "the adaptive ones; every rule of the records ends converged or diverged before "
        'it ("not converged" 0). Only explicit-Euler Adam, not a rule of the records, '
        "hits it: 9.6 % (polyTwo) and 3.6 % (polyThree) of its starts still move after "
        "200 000 steps.\n"
        "4. **GD** (h = 0.1, chosen): polyTwo 21.4 % diverged against 21.8 %, and the four "
        "shares within 1.0σ; polyThree diverges from every start as recorded (100 %).\n"
        "5. **Momentum: which discretisation.** The recorded Momentum is *symplectic* Euler "
        "on the heavy ball (v first, θ with the new v): polyTwo 0.148 / 0.152 / 0.358 / "
        "0.342 and no divergence against 0.147 / 0.140 / 0.357 / 0.356; polyThree 66.7 % "
        "diverged against 67.9 %. Explicit Euler with the same η and β̄ is a different "
        "optimizer: it diverges from 35.6 % of polyTwo's starts and from all of "
        "polyThree's.\n"
        "6. **Adam: which discretisation, which flow.** `zoo.adam` has no bias correction; "
        "with m and s updated before θ (symplectic Euler, Adam's order) it reproduces both "
        "records within 2σ (polyThree 0.150 / 0.147 / 0.208 / 0.495 against 0.145 / 0.137 / "
        "0.219 / 0.498), so the records are consistent with β₁ = 0.9, β₂ = 0.999, η = 0.1 "
        "without bias correction (we did not run a bias-corrected Adam). With explicit Euler "
        "θ moves with the previous m, s (not at all on the first step, m₀ = 0): its basins "
        "shift to (0, ±1) (polyTwo 0.044 / 0.039 at (∓2, ±1) against 0.15) and some "
        "starts never settle (point 3).\n"
        "7. **LC_EGD: the step growth.** The rule as §5 states it (η·10⁴ after every "
        "acceptance, then halved until R drops by ½η|g|²) takes the longest step the "
        "Armijo test allows, and such steps jump across basins: on polyThree it reaches the "
        "global minimum (0, −1) from 46.5 % of the starts and the shallow (0, 1) (R = 8) "
        "from only 1.5 %, against the record's 28.3 % and 28.6 %. Capped at h ≤ 0.2 the same "
        "rule follows the gradient flow, and its split is the record's (0.218 / 0.214 / "
        "0.280 / 0.287 against 0.216 / 0.216 / 0.283 / 0.286): the records are those of "
        "small steps, whatever cap or growth Bensaid's run used (the seed does not say). "
        "Neither variant ever diverges, where GD with the same first step always does. On "
        "polyTwo, whose four minima are equally deep, both variants give the gradient flow's "
        "split (0.22 at (∓2, ±1), 0.28 at (0, ±1)), with no record to compare.\n"
        "8. **LC_M** (no record): never diverges, where Momentum diverges from 66.7 % of "
        "polyThree's starts. Uncapped it behaves like LC_EGD (polyThree: 73.8 % at (0, −1), "
        "0.06 % at (0, 1)); capped at h ≤ 0.2 it keeps Momentum's polyTwo split "
        "(0.151 / 0.154 / 0.356 / 0.339 against Momentum's 0.148 / 0.152 / 0.358 / 0.342 "
        "at (−2, 1) / (2, −1) / (0, −1) / (0, 1)).\n"
        "9. **Euler–Richardson**: the reference variant with tolerance 0.01 (chosen) agrees "
        "with both records within 2.2σ (largest: polyTwo (0, −1), 0.279 against 0.293).\n"
        '10. **"other"**: one polyTwo start of 10 000 (capped LC_EGD, from (2.098, 1.040)) '
        "converges to the saddle (1, 0) (R = ¼): first-order rules almost never end at "
        "saddles, as the seed says, and the records' three decimals cannot show 0.0001."
    ),
    code(
        "# The claims of the text, checked on this run's tables.\n"
        "AGREE = {\n"
        "    'poly_two': ['GD', 'Momentum', 'Adam', 'Euler–Richardson'],\n"
        "    'poly_three': ['GD', 'Momentum', 'Adam', 'LC_EGD, h ≤ 0.2', 'Euler–Richardson'],\n"
        "}\n"
        "for name, table, z in (('poly_two', table2, z2), ('poly_three', table3, z3)):\n"
        "    worst = z.loc[AGREE[name]].abs().max(axis=1)\n"
        "    print(name, 'largest |z| per agreeing run:', worst.round(1).to_dict())\n"
        "    assert (worst < 4).all(), worst\n"
        "    # no adaptive rule and no Adam ever diverges; explicit Euler Momentum diverges more\n"
        "    safe = ['Adam', 'LC_EGD', 'LC_EGD, h ≤ 0.2', 'LC_M', 'LC_M, h ≤ 0.2', "
        "'Euler–Richardson']\n"
        "    assert (table.loc[safe, 'diverged'] == 0).all()\n"
        "    d = table['diverged']\n"
        "    assert d['Momentum (explicit Euler)'] > d['Momentum'] + 0.2\n"
        "    assert table.loc['Adam (explicit Euler)', 'not converged'] > 0.02\n"
        "    assert table.loc[safe, 'not converged'].max() == 0\n"
        "# polyThree: GD diverges from >= 99 % of the starts, LC_EGD from none; the uncapped\n"
        "# LC_EGD almost never reaches (0, 1), the capped one does as often as the record\n"
        "assert table3.loc['GD', 'diverged'] >= 0.99\n"
        "assert table3.loc['LC_EGD', 'diverged'] == 0\n"
        "assert table3.loc['LC_EGD', '(0, 1)'] < 0.05\n"
        "assert table3.loc['LC_EGD, h ≤ 0.2', '(0, 1)'] > 0.2\n"
        "assert table3.loc['LC_EGD', '(0, -1)'] > 0.4\n"
        "assert table3.loc['Momentum (explicit Euler)', 'diverged'] == 1.0\n"
        "saddle = table2['other'][table2['other'] > 0]\n"
        "print('polyTwo runs ending at a saddle (\"other\"):', saddle.to_dict())"
    ),
    md(
        "## Basin maps\n\n"
        "Each start coloured by its outcome (★: the minima): the diverged regions of GD "
        "and Momentum (and of their explicit-Euler variants), Adam's interleaved bands (its "
        "sensitivity to the start, the seed's Figure 1b), the gradient flow's four clean "
        "basins under the capped LC_EGD and Euler–Richardson, and the uncapped LC_EGD's and "
        "LC_M's long steps scattering starts across them (point 7 above):"
    ),
    code(
        "for name, result in (('polyTwo', two), ('polyThree', three)):\n"
        "    fig, axes = plt.subplots(2, 5, figsize=(22, 9), constrained_layout=True)\n"
        "    for ax, run in zip(axes.flat, runs):\n"
        "        result.plot_basins(run, ax=ax)\n"
        "        ax.set_title(f'{name}: {run}')\n"
        "    plt.show()"
    ),
]

nb = nbf.v4.new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, Path(__file__).with_name("bensaid_tables.ipynb"))
