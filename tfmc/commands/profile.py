"""`tfmc profile MODEL`: the per-layer MACs / parameters / channel-group table."""


def register(sub):
    from tfmc.cli import add_model_argument

    p = sub.add_parser("profile", help="per-layer MACs, parameters and channel groups of a model")
    add_model_argument(p)
    p.add_argument("--groups", action="store_true", help="also list the channel groups and why frozen ones are")
    p.set_defaults(run=run)


def run(args):
    from tfmc import cost, graph, io

    model = io.load_model(args.model, trust_code=args.trust_model_code)
    print(cost.profile(model).to_markdown())
    if args.groups:
        print()
        print("| group | channels | prunable | members | consumers |")
        print("|---|---:|---|---|---|")
        for g in graph.channel_groups(model):
            state = "yes" if g.prunable else f"no: {g.reason}"
            print(f"| {g.name} | {g.channels} | {state} | {', '.join(g.members)} | {', '.join(g.consumers)} |")
    return 0
