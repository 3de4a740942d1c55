def adopt(w, g, m, v, lr, step, beta1=0.9, beta2=0.9999, eps=1e-6, wd=0.0):
    "ADOPT: normalise by the previous second moment, clip at step^(1/4); step 1 only fills v."
    d = g + wd * w
    later = gt(step, 1)
    n = clip(d / maximum(sqrt(v), eps), step ** 0.25)
    m = interp(m, n, (1 - beta1) * later)
    update = lr * m
    v = interp(v, d * d, where(later, 1 - beta2, 1))
    return update, m, v
