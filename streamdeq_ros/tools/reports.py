"""Reports of the streaming evaluation: JSON, CSV, Markdown tables, plots, README blocks."""
import csv
import json
import os
import re
from typing import Dict, Sequence

from .metrics import METRIC_NAMES, POSE_DET_IOU, POSE_DET_SCORE


def write_reports(results: Dict, out_dir: str) -> Dict[str, str]:
    """Write results.json, curves.csv, per_class.csv, table.md and the plot; return paths."""
    results = json.loads(json.dumps(results))          # one form: string keys
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, v) for k, v in (
        ('json', 'results.json'), ('curves', 'curves.csv'), ('per_class', 'per_class.csv'),
        ('table', 'table.md'), ('plot', 'miou_vs_offset.png'))}
    with open(paths['json'], 'w') as fh:
        json.dump(results, fh, indent=1, sort_keys=True)
    with open(paths['curves'], 'w', newline='') as fh:
        w = csv.writer(fh)
        w.writerow(['model', 'solver', 'iters', 'offset', 'miou', 'final_residual'])
        for name, r in results['models'].items():
            for m, curve in r['curves'].items():
                for t, v in sorted(curve.items(), key=lambda kv: int(kv[0])):
                    w.writerow([name, r['solver'], m, t, '%.4f' % v,
                                '%.4g' % r['residual'][m][t]])
            b = r['baseline']
            w.writerow([name, r['solver'], 'single-frame N=%d' % b['iters'], 0,
                        '%.4f' % b['miou'], '%.4g' % b['residual']])
    with open(paths['per_class'], 'w', newline='') as fh:
        w = csv.writer(fh)
        names = results['classes']
        w.writerow(['model', 'iters', 'offset'] + names)
        for name, r in results['models'].items():
            last = str(max(results['offsets']))
            for m, per in r['per_class'].items():
                w.writerow([name, m, last] + ['' if per[last][c] is None else
                                              '%.4f' % per[last][c] for c in names])
            w.writerow([name, 'single-frame N=%d' % r['baseline']['iters'], 0]
                       + ['' if r['baseline']['per_class'][c] is None else
                          '%.4f' % r['baseline']['per_class'][c] for c in names])
    with open(paths['table'], 'w') as fh:
        fh.write(table_markdown(results))
    plot_curves(results, paths['plot'])
    extra = sorted({k for r in results['models'].values() for k in r['metrics']} - {'miou'})
    if extra:
        paths['metrics'] = os.path.join(out_dir, 'metrics.csv')
        paths['tasks_table'] = os.path.join(out_dir, 'tasks_table.md')
        with open(paths['metrics'], 'w', newline='') as fh:
            w = csv.writer(fh)
            w.writerow(['model', 'solver', 'metric', 'iters', 'offset', 'value'])
            for name, r in results['models'].items():
                for metric, entry in r['metrics'].items():
                    for m, curve in entry['curves'].items():
                        for t, v in sorted(curve.items(), key=lambda kv: int(kv[0])):
                            w.writerow([name, r['solver'], metric, m, t, '%.4f' % v])
                    w.writerow([name, r['solver'], metric,
                                'single-frame N=%d' % r['baseline']['iters'], 0,
                                '%.4f' % r['baseline'][metric]])
        with open(paths['tasks_table'], 'w') as fh:
            fh.write(tasks_table_markdown(results))
        for metric in extra:
            paths['plot_' + metric] = os.path.join(out_dir, '%s_vs_offset.png' % metric)
            plot_curves(results, paths['plot_' + metric], metric)
    if results.get('peers'):
        paths['peers_table'] = os.path.join(out_dir, 'accuracy_cost.md')
        paths['plot_peers'] = os.path.join(out_dir, 'accuracy_vs_ms.png')
        with open(paths['peers_table'], 'w') as fh:
            fh.write(peers_table_markdown(results))
        plot_accuracy_cost(results, paths['plot_peers'])
    return paths


#: (metric, StreamDEQ timing field with only that head read) of the peer comparison
PEER_METRICS = (('miou', 'fps_seg_only'), ('map50', 'fps_det_only'))


def accuracy_cost_points(results: Dict, metric: str, field: str):
    """Return ({model: [(label, ms, value)]}, [(peer, ms, value)]) for one metric.

    StreamDEQ points are streamed at the largest offset for each M, then the single-frame N;
    their milliseconds are those of reading only the compared head (all heads if not timed).
    """
    results = json.loads(json.dumps(results))
    off = str(max(results['offsets']))
    curves = {}
    for name, r in results['models'].items():
        if metric not in r['metrics']:
            continue
        fps = r.get(field) or r['fps']
        pts = [('M=%d' % m, 1000.0 / fps[str(m)], r['metrics'][metric]['curves'][str(m)][off])
               for m in results['iters']]
        pts.append(('N=%d' % r['baseline']['iters'], 1000.0 / fps['baseline'],
                    r['baseline'][metric]))
        curves[name] = pts
    peers = [(name, p['ms'], p[metric]) for name, p in results.get('peers', {}).items()
             if metric in p and 'ms' in p]
    return curves, peers


def peers_table_markdown(results: Dict) -> str:
    """Accuracy against milliseconds per frame: StreamDEQ per M and single-frame, and peers."""
    out = []
    for metric, field in PEER_METRICS:
        curves, peers = accuracy_cost_points(results, metric, field)
        if not peers:
            continue
        out.append('| %s | ms / frame | %s |\n|---|---|---|' % (
            'model', METRIC_NAMES[metric]))
        for name, pts in curves.items():
            for label, ms, v in pts:
                out.append('| %s %s | %.1f | %.1f |' % (name, label, ms, 100 * v))
        for name, ms, v in peers:
            p = results['peers'][name]
            out.append('| %s (%s, %s steps, single frame) | %.1f | %.1f |' % (
                name, p['peer'], p.get('train_steps'), ms, 100 * v))
        out.append('')
    out.append('StreamDEQ rows: streamed, scored at offset %d (M iterations per frame), and the '
               'single-frame N; their time reads only the compared head. Peers: one frame at a '
               'time. %d held-out clips of %dx%d; one stream, batch 1, %s, median of %d '
               'interleaved timing rounds, the whole frame included (normalisation, network, '
               'arg-max or detection post-processing).'
               % (max(results['offsets']), results['clips'], results['width'],
                  results['height'], results['device'], results.get('fps_repeats', 1)))
    return '\n'.join(out) + '\n'


def plot_accuracy_cost(results: Dict, path: str):
    """Plot accuracy against ms per frame: a curve per StreamDEQ model, a point per peer."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    panels = [(m, f) for m, f in PEER_METRICS if accuracy_cost_points(results, m, f)[1]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (metric, field) in zip(axes[0], panels):
        curves, peers = accuracy_cost_points(results, metric, field)
        for name, pts in curves.items():
            ax.plot([p[1] for p in pts[:-1]], [100 * p[2] for p in pts[:-1]], 'o-',
                    label='%s streamed' % name)
            ax.plot([pts[-1][1]], [100 * pts[-1][2]], 's', color='k',
                    label='%s single-frame %s' % (name, pts[-1][0]))
            for label, ms, v in pts:
                ax.annotate(label, (ms, 100 * v), textcoords='offset points', xytext=(4, -10),
                            fontsize=7)
        for name, ms, v in peers:
            ax.plot([ms], [100 * v], '*', ms=12, label=name)
        ax.set_xscale('log')
        ax.set_xlabel('ms per frame (log scale)')
        ax.set_ylabel('%s (%%)' % METRIC_NAMES[metric])
        ax.grid(alpha=0.3, which='both')
        ax.legend(fontsize=7, loc='lower right')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table_markdown(results: Dict) -> str:
    """Table-I-style markdown: model x M -> mIoU (streamed, largest offset) and frames/s."""
    results = json.loads(json.dumps(results))
    models = results['models']
    iters = results['iters']
    off = str(max(results['offsets']))
    head = '| model | solver | ' + ' | '.join('M=%d mIoU / fps' % m for m in iters) + \
        ' | single-frame N mIoU / fps |\n'
    head += '|---|---|' + '---|' * (len(iters) + 1) + '\n'
    rows = []
    for name, r in models.items():
        cells = []
        for m in iters:
            v = r['curves'][str(m)][off]
            cells.append('%.1f / %.1f' % (100 * v, r['fps'][str(m)]))
        b = r['baseline']
        cells.append('%.1f / %.1f (N=%d)' % (100 * b['miou'], r['fps']['baseline'], b['iters']))
        rows.append('| %s | %s | %s |' % (name, r['solver'], ' | '.join(cells)))
    note = ('\nmIoU (%%) at offset %d (streamed from zeros %d frames before the labelled frame) '
            'over %d held-out clips of %dx%d; frames/s of one stream, batch 1, %s, median of %d '
            'interleaved timing rounds.\n'
            % (int(off), int(off), results['clips'], results['width'], results['height'],
               results['device'], results.get('fps_repeats', 1)))
    return head + '\n'.join(rows) + '\n' + note


def tasks_table_markdown(results: Dict) -> str:
    """Table-I analogue over tasks: model x M -> mIoU, mAP@50, PCKh (largest offset), frames/s.

    For a model with more heads than segmentation, the frames/s of the same model reading only
    its segmentation head are given too, and their ratio (the cost of the extra heads).
    """
    results = json.loads(json.dumps(results))
    off = str(max(results['offsets']))
    metrics = [k for k in METRIC_NAMES
               if any(k in r['metrics'] for r in results['models'].values())]
    head = ('| model | M | ' + ' | '.join(METRIC_NAMES[k] for k in metrics)
            + ' | frames/s (all heads) | frames/s (segmentation only) | cost ratio |\n')
    head += '|---|---|' + '---|' * (len(metrics) + 3) + '\n'
    rows = []
    for name, r in results['models'].items():
        keys = [(str(m), 'M=%d' % m) for m in results['iters']]
        keys.append(('baseline', 'single-frame N=%d' % r['baseline']['iters']))
        for key, label in keys:
            cells = []
            for k in metrics:
                if k not in r['metrics']:
                    cells.append('—')
                    continue
                v = r['baseline'][k] if key == 'baseline' else r['metrics'][k]['curves'][key][off]
                cells.append('%.1f' % (100 * v))
            fps = r['fps'][key]
            seg = r.get('fps_seg_only', {}).get(key)
            cells += ['%.1f' % fps, '%.1f' % seg if seg else '—',
                      '%.2f' % (seg / fps) if seg else '—']
            rows.append('| %s | %s | %s |' % (name, label, ' | '.join(cells)))
    note = ('\nMetrics (%%) at offset %s (streamed from zeros %s frames before the labelled '
            'frame; the single-frame rows solve the labelled frame alone) over %d held-out clips '
            'of %dx%d. Detection: mAP at IoU 0.5. PCKh@0.5 reads the joints inside the '
            'ground-truth person boxes (MPII protocol); "detected persons" reads them inside the '
            "detector's person boxes (score >= %g, matched at IoU >= %g; a missed person's "
            'joints count as wrong). Frames/s: one stream, batch 1, %s, median '
            'of %d interleaved rounds; cost ratio = segmentation-only frames/s over all-heads '
            'frames/s.\n' % (off, off, results['clips'], results['width'], results['height'],
                             POSE_DET_SCORE, POSE_DET_IOU, results['device'],
                             results.get('fps_repeats', 1)))
    return head + '\n'.join(rows) + '\n' + note


def plot_curves(results: Dict, path: str, metric: str = 'miou'):
    """Plot a metric against offset: one panel per model, a curve per M, single-frame N dashed.

    Models without the metric are left out.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    models = {name: r for name, r in json.loads(json.dumps(results))['models'].items()
              if metric in r['metrics']}
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.8), squeeze=False,
                             sharey=True)
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for ax, (name, r) in zip(axes[0], models.items()):
        for i, (m, curve) in enumerate(r['metrics'][metric]['curves'].items()):
            ts = sorted(int(t) for t in curve)
            ax.plot(ts, [100 * curve[str(t)] for t in ts],
                    marker='o', ms=3, color=colors[i % len(colors)], label='M=%s' % m)
        b = r['baseline']
        ax.axhline(100 * b[metric], ls='--', color='k',
                   label='single-frame N=%d' % b['iters'])
        ax.set_title('%s (%s)' % (name, r['solver']))
        ax.set_xlabel('offset t (frames streamed before the labelled one)')
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc='lower right')
    axes[0][0].set_ylabel('%s (%%)' % METRIC_NAMES[metric])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


README_START = '<!-- streamdeq-eval:start -->'
README_END = '<!-- streamdeq-eval:end -->'
README_TASKS = ('<!-- streamdeq-eval-tasks:start -->', '<!-- streamdeq-eval-tasks:end -->')


def update_readme(readme: str, table: str, plots: Sequence[str], command: str,
                  markers: Sequence[str] = (README_START, README_END)):
    """Replace the text between ``markers`` of ``readme`` with the table and plots."""
    start, end = markers
    with open(readme) as fh:
        text = fh.read()
    if start not in text or end not in text:
        raise ValueError('%s has no %s ... %s markers' % (readme, start, end))
    images = ''.join('![%s](%s)\n' % (os.path.basename(p)[:-4].replace('_', ' '), p)
                     for p in plots)
    body = '%s\nRegenerate with:\n\n```\n%s\n```\n\n%s\n%s%s' % (
        start, command, table, images, end)
    pattern = re.escape(start) + '.*?' + re.escape(end)
    text = re.sub(pattern, lambda _: body, text, flags=re.S)
    with open(readme, 'w') as fh:
        fh.write(text)


# ---------------------------------------------------------------------------------------------
