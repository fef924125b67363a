// jest setup file of the `comfyui-current` project: its simulators play today's ComfyUI
process.env.SIM_VERSION = 'current';
