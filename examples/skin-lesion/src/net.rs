//! LesionNet's network: a small residual CNN written directly in tch, with the parameter
//! names a PyTorch twin would have (`stem.weight`, `block1.conv1.weight`, `head.bias`, ...).

use tch::Tensor;
use tch::nn::{self, ModuleT};

/// Conv 3x3 + BatchNorm + ReLU, twice, around an identity shortcut.
#[derive(Debug)]
struct Residual {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
}

impl Residual {
    fn new(p: &nn::Path, channels: i64) -> Self {
        let conv = nn::ConvConfig {
            padding: 1,
            bias: false,
            ..Default::default()
        };
        Self {
            conv1: nn::conv2d(p / "conv1", channels, channels, 3, conv),
            bn1: nn::batch_norm2d(p / "bn1", channels, Default::default()),
            conv2: nn::conv2d(p / "conv2", channels, channels, 3, conv),
            bn2: nn::batch_norm2d(p / "bn2", channels, Default::default()),
        }
    }
}

impl ModuleT for Residual {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = xs
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .apply(&self.conv2)
            .apply_t(&self.bn2, train);
        (ys + xs).relu()
    }
}

/// stem (1 → 16) · residual block · strided conv (16 → 32) · residual block · global average
/// pool · `head` (32 → classes).
#[derive(Debug)]
pub struct LesionNet {
    stem: nn::Conv2D,
    stem_bn: nn::BatchNorm,
    block1: Residual,
    down: nn::Conv2D,
    down_bn: nn::BatchNorm,
    block2: Residual,
    head: nn::Linear,
}

impl LesionNet {
    /// Builds the network's variables under `p` for `classes` outputs.
    pub fn new(p: &nn::Path, classes: i64) -> Self {
        let plain = nn::ConvConfig {
            padding: 1,
            bias: false,
            ..Default::default()
        };
        Self {
            stem: nn::conv2d(p / "stem", 1, 16, 3, plain),
            stem_bn: nn::batch_norm2d(p / "stem_bn", 16, Default::default()),
            block1: Residual::new(&(p / "block1"), 16),
            down: nn::conv2d(p / "down", 16, 32, 3, nn::ConvConfig { stride: 2, ..plain }),
            down_bn: nn::batch_norm2d(p / "down_bn", 32, Default::default()),
            block2: Residual::new(&(p / "block2"), 32),
            head: nn::linear(p / "head", 32, classes, Default::default()),
        }
    }
}

impl ModuleT for LesionNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply(&self.stem)
            .apply_t(&self.stem_bn, train)
            .relu()
            .apply_t(&self.block1, train)
            .apply(&self.down)
            .apply_t(&self.down_bn, train)
            .relu()
            .apply_t(&self.block2, train)
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
            .apply(&self.head)
    }
}
