"""torchvision's models as their published weights run them, for the parity
scripts: Inception-v3 and GoogLeNet with transform_input (and, where asked,
the auxiliary heads whose weights the published files carry)."""
import torchvision


def build(arch, aux_logits=False):
    if arch in ("inception_v3", "googlenet"):
        return getattr(torchvision.models, arch)(weights=None, aux_logits=aux_logits, transform_input=True,
                                                 init_weights=True)
    return getattr(torchvision.models, arch)(weights=None)
