//! Writes LesionNet's initial weights (PyTorch's default initialisation as tch does it, from
//! seed 0) for the example package: `lesion-weights OUT.safetensors CLASSES`. In a real
//! author's workflow these would be pretrained weights saved from PyTorch.

use std::process::ExitCode;

use skin_lesion::net::LesionNet;
use tch::Device;
use tch::nn::VarStore;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(out), Some(Ok(classes))) = (args.get(1), args.get(2).map(|c| c.parse::<i64>()))
    else {
        eprintln!("usage: lesion-weights OUT.safetensors CLASSES");
        return ExitCode::from(2);
    };
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    let _net = LesionNet::new(&vs.root(), classes);
    match fl_torch::write_safetensors(out, &fl_torch::named_tensors(&vs)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {out}: {error}");
            ExitCode::FAILURE
        }
    }
}
