def momentum(w, g, buf, lr, step, momentum=0.9, dampening=0.0, wd=0.0):
    "Heavy-ball momentum as torch.optim.SGD: buf <- momentum buf + (1 - dampening) d, the first buf = d."
    d = g + wd * w
    buf = momentum * buf + where(step - 1, 1 - dampening, 1) * d
    update = lr * buf
    return update, buf
