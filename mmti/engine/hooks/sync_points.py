"""When the host may wait for the device: only where something is read out."""


def is_sync_point(runner) -> bool:
    """True at the last iteration and wherever a hook with an ``interval``
    acts (logging, checkpoints, embedding snapshots, validation renders).

    Between those points nothing needs a Python number from the GPU, so the
    host can queue the next step while the device is still busy.
    """
    step = runner.iter + 1
    if step >= runner.max_iters:
        return True
    for hook in runner.hooks:
        interval = getattr(hook, 'interval', None)
        if isinstance(interval, int) and interval > 0 and step % interval == 0:
            return True
    return False
