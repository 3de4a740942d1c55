def adahessian(w, g, m, v, h, lr, step, beta1=0.9, beta2=0.999, eps=1e-16, power=1.0, wd=0.0,
               k=1):
    "AdaHessian: Adam with the squared Hutchinson Hessian diagonal (updated every k steps)."
    m = interp(m, g, 1 - beta1)
    v = interp(v, h * h, (1 - beta2) * lt(mod(step - 1, k), 0.5))
    denom = (v / (1 - beta2 ** step)) ** (power / 2) + eps
    update = lr * (m / (1 - beta1 ** step) / denom + wd * w)
    return update, m, v
