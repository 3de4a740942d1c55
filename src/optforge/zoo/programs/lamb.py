def lamb(w, g, m, v, lr, step, beta1=0.9, beta2=0.999, eps=1e-6, wd=0.0, clamp=10.0):
    "LAMB: an Adam direction (with L2 term) rescaled by the layer's trust ratio ||w|| / ||u||."
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    u = m / (sqrt(v) + eps) + wd * w
    wn = minimum(norm(w), clamp)
    un = norm(u)
    trust = where(minimum(wn, un), wn / (un + eps), 1)
    update = lr / (1 - beta1 ** step) * trust * u
    return update, m, v
