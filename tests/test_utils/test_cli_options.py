"""--device and --cfg-options as every mmti command reads them."""
import pytest
import torch

from mmti.utils import UserError, check_device


def test_a_device_name_is_checked_before_anything_loads(monkeypatch):
    assert check_device('cpu') == torch.device('cpu')
    with pytest.raises(UserError, match=r"--device 'gpu' is not a device; use cpu, cuda or cuda:N"):
        check_device('gpu')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)  # as on a machine without one
    for name in ('cuda', 'cuda:1'):
        with pytest.raises(UserError, match=rf'--device {name}: this machine has no usable CUDA '
                                            r'GPU; pass --device cpu\.'):
            check_device(name)
