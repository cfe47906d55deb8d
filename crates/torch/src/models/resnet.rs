//! ResNet with BasicBlocks (ResNet-18 and -34) or Bottlenecks (ResNet-50), parameter for
//! parameter torchvision's `torchvision.models.resnet18/34/50` (ResNet v1.5: the stride of a
//! Bottleneck is on its 3x3 convolution), with a configurable number of input channels.

use tch::Tensor;
use tch::nn::{self, ModuleT};

/// Which ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResNetDepth {
    /// ResNet-18: blocks [2, 2, 2, 2].
    R18,
    /// ResNet-34: blocks [3, 4, 6, 3].
    R34,
    /// ResNet-50: Bottleneck blocks [3, 4, 6, 3].
    R50,
}

impl ResNetDepth {
    fn blocks(self) -> [i64; 4] {
        match self {
            Self::R18 => [2, 2, 2, 2],
            Self::R34 | Self::R50 => [3, 4, 6, 3],
        }
    }

    /// Output channels of a block over its width (torchvision's `expansion`).
    fn expansion(self) -> i64 {
        match self {
            Self::R18 | Self::R34 => 1,
            Self::R50 => 4,
        }
    }
}

fn conv(
    path: nn::Path,
    c_in: i64,
    c_out: i64,
    kernel: i64,
    stride: i64,
    padding: i64,
) -> nn::Conv2D {
    let config = nn::ConvConfig {
        stride,
        padding,
        bias: false,
        ..Default::default()
    };
    nn::conv2d(path, c_in, c_out, kernel, config)
}

fn basic_block(path: nn::Path, c_in: i64, c_out: i64, stride: i64) -> impl ModuleT + use<> {
    let conv1 = conv(&path / "conv1", c_in, c_out, 3, stride, 1);
    let bn1 = nn::batch_norm2d(&path / "bn1", c_out, Default::default());
    let conv2 = conv(&path / "conv2", c_out, c_out, 3, 1, 1);
    let bn2 = nn::batch_norm2d(&path / "bn2", c_out, Default::default());
    let downsample = downsample(&path, c_in, c_out, stride);
    nn::func_t(move |xs: &Tensor, train| {
        let identity = match &downsample {
            Some(d) => xs.apply_t(d, train),
            None => xs.shallow_clone(),
        };
        let y = xs
            .apply(&conv1)
            .apply_t(&bn1, train)
            .relu()
            .apply(&conv2)
            .apply_t(&bn2, train);
        (y + identity).relu()
    })
}

fn downsample(path: &nn::Path, c_in: i64, c_out: i64, stride: i64) -> Option<impl ModuleT + use<>> {
    (stride != 1 || c_in != c_out).then(|| {
        let d = path / "downsample";
        let c = conv(&d / "0", c_in, c_out, 1, stride, 0);
        let bn = nn::batch_norm2d(&d / "1", c_out, Default::default());
        nn::func_t(move |xs: &Tensor, train| xs.apply(&c).apply_t(&bn, train))
    })
}

/// torchvision's `Bottleneck`: 1x1 down to `width`, 3x3 (strided), 1x1 up to `4 * width`.
fn bottleneck(path: nn::Path, c_in: i64, width: i64, stride: i64) -> impl ModuleT + use<> {
    let c_out = width * 4;
    let conv1 = conv(&path / "conv1", c_in, width, 1, 1, 0);
    let bn1 = nn::batch_norm2d(&path / "bn1", width, Default::default());
    let conv2 = conv(&path / "conv2", width, width, 3, stride, 1);
    let bn2 = nn::batch_norm2d(&path / "bn2", width, Default::default());
    let conv3 = conv(&path / "conv3", width, c_out, 1, 1, 0);
    let bn3 = nn::batch_norm2d(&path / "bn3", c_out, Default::default());
    let downsample = downsample(&path, c_in, c_out, stride);
    nn::func_t(move |xs: &Tensor, train| {
        let identity = match &downsample {
            Some(d) => xs.apply_t(d, train),
            None => xs.shallow_clone(),
        };
        let y = xs
            .apply(&conv1)
            .apply_t(&bn1, train)
            .relu()
            .apply(&conv2)
            .apply_t(&bn2, train)
            .relu()
            .apply(&conv3)
            .apply_t(&bn3, train);
        (y + identity).relu()
    })
}

/// Builds a ResNet under `path` (names as torchvision: `conv1`, `bn1`, `layer1.0.conv1`, ...,
/// `fc`).
pub fn resnet(
    path: &nn::Path,
    depth: ResNetDepth,
    in_channels: i64,
    num_classes: i64,
) -> impl ModuleT + use<> {
    let conv1 = conv(path / "conv1", in_channels, 64, 7, 2, 3);
    let bn1 = nn::batch_norm2d(path / "bn1", 64, Default::default());
    let mut layers = Vec::new();
    let mut c_in = 64;
    for (i, (count, width)) in depth
        .blocks()
        .into_iter()
        .zip([64, 128, 256, 512])
        .enumerate()
    {
        let layer_path = path / format!("layer{}", i + 1);
        let mut layer = nn::seq_t();
        for b in 0..count {
            let stride = if i > 0 && b == 0 { 2 } else { 1 };
            let block_path = &layer_path / b.to_string();
            layer = match depth {
                ResNetDepth::R50 => layer.add(bottleneck(block_path, c_in, width, stride)),
                _ => layer.add(basic_block(block_path, c_in, width, stride)),
            };
            c_in = width * depth.expansion();
        }
        layers.push(layer);
    }
    let fc = nn::linear(path / "fc", c_in, num_classes, Default::default());
    nn::func_t(move |xs: &Tensor, train| {
        let mut x = xs.apply(&conv1).apply_t(&bn1, train).relu().max_pool2d(
            [3, 3],
            [2, 2],
            [1, 1],
            [1, 1],
            false,
        );
        for layer in &layers {
            x = x.apply_t(layer, train);
        }
        x.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&fc)
    })
}
