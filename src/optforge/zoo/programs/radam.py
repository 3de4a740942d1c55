def radam(w, g, m, v, lr, step, beta1=0.9, beta2=0.999, eps=1e-8, wd=0.0):
    "RAdam: the adaptive step is rectified once the SMA length rho_t exceeds 5, else momentum SGD."
    d = g + wd * w
    m = interp(m, d, 1 - beta1)
    v = beta2 * v + (1 - beta2) * d * d
    bc2 = 1 - beta2 ** step
    rho_inf = 2 / (1 - beta2) - 1
    rho = rho_inf - 2 * step * beta2 ** step / bc2
    rect = sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
    adaptive = where(gt(rho, 5), rect * sqrt(bc2) / (sqrt(v) + eps), 1)
    update = lr * m / (1 - beta1 ** step) * adaptive
    return update, m, v
