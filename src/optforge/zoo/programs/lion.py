def lion(w, g, m, lr, beta1=0.9, beta2=0.99, wd=0.0):
    "Lion: the sign of an interpolation of momentum and gradient, decoupled weight decay."
    update = lr * (sign(interp(m, g, 1 - beta1)) + wd * w)
    m = interp(m, g, 1 - beta2)
    return update, m
