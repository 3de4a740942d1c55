def cautious_lion(w, g, m, lr, beta1=0.9, beta2=0.99, wd=0.0):
    "Cautious Lion: Lion's sign update masked where it disagrees with the gradient, mask rescaled."
    u = sign(interp(m, g, 1 - beta1))
    mask = gt(u * g, 0)
    m = interp(m, g, 1 - beta2)
    update = lr * (u * (mask * (numel(mask) / (sum(mask) + 1))) + wd * w)
    return update, m
