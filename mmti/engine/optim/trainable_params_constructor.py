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
        if self.paramwise_cfg:
            return super().__call__(model)
        if is_model_wrapper(model):
            model = model.module
        wrapper_cfg = self.optim_wrapper_cfg.copy()
        wrapper_cfg.setdefault('type', 'OptimWrapper')
        optimizer_cfg = self.optimizer_cfg.copy()
        trainable = [p for p in model.parameters() if p.requires_grad]
        if not trainable:
            raise ValueError('The model has no trainable parameters.')
        optimizer_cfg['params'] = trainable
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        return OPTIM_WRAPPERS.build(wrapper_cfg, default_args=dict(optimizer=optimizer))

    def add_params(self, params: list[dict], module, prefix: str = '', is_dcn_module=None) -> None:
        super().add_params(params, module, prefix, is_dcn_module)
        params[:] = [group for group in params if group['params'][0].requires_grad]
