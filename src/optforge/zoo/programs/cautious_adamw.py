def cautious_adamw(w, g, m, v, lr, step, beta1=0.9, beta2=0.999, eps=1e-8, wd=0.0):
    "Cautious AdamW: AdamW masked where momentum and gradient disagree in sign, mask rescaled."
    m = interp(m, g, 1 - beta1)
    v = beta2 * v + (1 - beta2) * g * g
    mask = gt(m * g, 0)
    mask = mask * (numel(mask) / (sum(mask) + 1))
    denom = sqrt(v) / sqrt(1 - beta2 ** step) + eps
    update = lr * (m * mask / (1 - beta1 ** step) / denom + wd * w)
    return update, m, v
