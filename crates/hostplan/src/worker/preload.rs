//! The `preload` step (the Nix module `preload.nix`): the images in containerd when the node
//! boots. The caller makes them (the `oci` crate, from busybox and the stack's coredns).

use crate::options::Runtime;
use diskless_builder::plan::PreloadImage;

pub fn images(runtime: Runtime, images: Vec<PreloadImage>) -> Vec<PreloadImage> {
    images
        .into_iter()
        .map(|mut i| {
            if runtime == Runtime::Stack {
                // containerd 2.x honours the label: the kubelet's image GC never removes an
                // image that cannot be pulled again.
                i.labels
                    .insert("io.cri-containerd.pinned".into(), "pinned".into());
            }
            i
        })
        .collect()
}
