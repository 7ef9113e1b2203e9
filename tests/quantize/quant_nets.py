"""A small conv net and data shared by the quantisation tests."""
import torch
import torch.nn as nn

EXAMPLE = torch.zeros(1, 1, 12, 12)


class SmallConvNet(nn.Module):
    """conv-BN-ReLU stem, a residual block, a second conv stage and a linear head: every pattern the int8
    scheme places Q/DQ around (shared inputs, an add, pooling, flatten)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.conv1 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.down = nn.Conv2d(16, 24, 3, stride=2, padding=1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(x + self.bn2(self.conv2(y)))
        x = torch.relu(self.down(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def small_net(seed: int = 0) -> SmallConvNet:
    """A SmallConvNet with random, non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = SmallConvNet()
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.uniform_(-0.3, 0.3)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.2, 0.2)
    return model.eval()
