//! A small convolutional network for small images (the digits example, fast tests).
//!
//! The PyTorch equivalent, with the same parameter names:
//!
//! ```python
//! class SmallCnn(nn.Module):
//!     def __init__(self, in_channels=1, num_classes=10):
//!         super().__init__()
//!         self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1)
//!         self.bn1 = nn.BatchNorm2d(32)
//!         self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
//!         self.bn2 = nn.BatchNorm2d(64)
//!         self.fc = nn.Linear(64 * 2 * 2, num_classes)
//!     def forward(self, x):
//!         x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
//!         x = F.adaptive_avg_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
//!         return self.fc(torch.flatten(x, 1))
//! ```

use tch::Tensor;
use tch::nn::{self, ModuleT};

/// Builds the small CNN under `path`.
pub fn small_cnn(path: &nn::Path, in_channels: i64, num_classes: i64) -> impl ModuleT + use<> {
    let conv = |c_in, c_out, name| {
        let config = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        nn::conv2d(path / name, c_in, c_out, 3, config)
    };
    let conv1 = conv(in_channels, 32, "conv1");
    let bn1 = nn::batch_norm2d(path / "bn1", 32, Default::default());
    let conv2 = conv(32, 64, "conv2");
    let bn2 = nn::batch_norm2d(path / "bn2", 64, Default::default());
    let fc = nn::linear(path / "fc", 64 * 2 * 2, num_classes, Default::default());
    nn::func_t(move |xs: &Tensor, train| {
        let x = xs
            .apply(&conv1)
            .apply_t(&bn1, train)
            .relu()
            .max_pool2d_default(2);
        let x = x
            .apply(&conv2)
            .apply_t(&bn2, train)
            .relu()
            .adaptive_avg_pool2d([2, 2]);
        x.flatten(1, -1).apply(&fc)
    })
}
