"""Write the synthetic lumbar phantom: image, true annotation and truth.json."""

from . import Outcome


def add_arguments(parser):
    parser.add_argument("outdir", help="folder to write phantom.nii.gz, phantom.pvm.json and truth.json into")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument("--spacing", type=float, default=0.78125, help="in-plane pixel spacing in mm (default 0.78125)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args):
    from ..core.phantom import write_phantom

    paths = write_phantom(args.outdir, seed=args.seed, spacing=args.spacing)
    data = {key: str(path) for key, path in paths.items()}
    text = "\n".join(f"{key:>10}: {path}" for key, path in data.items())
    return Outcome(data, text)
