"""Export: a trained policy to ONNX, then to plain C for the Crazyflie (code generator, app, MCU cost), checked
against onnxruntime on the host and on an emulated STM32F405."""
