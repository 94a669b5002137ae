"""Give the optimizer only what trains: the placeholder rows."""
from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS, OPTIMIZERS

from mmti.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TrainableParamsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's constructor, minus every parameter with ``requires_grad=False``.

    mmengine would hand the frozen UNet/VAE/text encoder (~1B parameters on
    SD 1.5) to the optimizer too: no gradients, but a walk over all of them
    every step and their entries in every checkpoint's param groups.
    """

    def __call__(self, model) -> OptimWrapper:
        module = model.module if is_model_wrapper(model) else model
        trainable = [p for p in module.parameters() if p.requires_grad]
        if not trainable:
            raise ValueError('The model has no trainable parameters.')
        if self.paramwise_cfg:
            return super().__call__(model)
        wrapper_cfg = self.optim_wrapper_cfg.copy()
        wrapper_cfg.setdefault('type', 'OptimWrapper')
        optimizer_cfg = self.optimizer_cfg.copy()
        optimizer_cfg['params'] = trainable
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        return OPTIM_WRAPPERS.build(wrapper_cfg, default_args=dict(optimizer=optimizer))

    def add_params(self, params: list[dict], module, prefix: str = '', is_dcn_module=None) -> None:
        super().add_params(params, module, prefix, is_dcn_module)
        if prefix:
            return  # only the outermost call sees the whole list
        # The placeholder table is reachable twice (model.token_embedding and
        # inside the text encoder); keep each trainable parameter once.
        seen = set()
        kept = []
        for group in params:
            param = group['params'][0]
            if param.requires_grad and id(param) not in seen:
                seen.add(id(param))
                kept.append(group)
        params[:] = kept
